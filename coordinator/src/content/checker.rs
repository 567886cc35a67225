//! Rule validation on upload.
//!
//! YARA-X is built into the agent only (it costs minutes of build time and
//! megabytes of binary); the coordinator validates a bundle by running the
//! agent binary's `picket-agent rules check --json DIR`, which compiles the
//! files exactly as every agent will, each file on its own so one bad file
//! never hides the others, and with `include` refused (as agents refuse it
//! in bundles: a bundle must be self-contained). The binary is `[rules] checker` in the config,
//! by default `picket-agent` beside the coordinator's own executable, else
//! on `PATH`. Without it, uploads are refused with a clear error (nothing is
//! stored unchecked).

use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_common::detection::RuleFile;
use serde::Deserialize;

/// How long a check may run (signature-base compiles in a few seconds).
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// The checker's verdict on a bundle.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckReport {
    /// Files that compiled.
    pub loaded: Vec<String>,
    /// Files that did not, with the compiler's message (file, line, rule).
    pub errors: Vec<FileError>,
    /// Rules in the compiled set, the built-in ones included.
    pub rules: i64,
    /// Each rule's severity by `namespace:rule` (what investigations trust;
    /// absent from checkers older than this coordinator).
    #[serde(default)]
    pub severities: std::collections::BTreeMap<String, picket_common::detection::Severity>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct FileError {
    pub file: String,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("rule checker {0} not found: install picket-agent on the coordinator host or set [rules] checker")]
    Missing(PathBuf),
    #[error("rule checker failed: {0}")]
    Failed(String),
}

/// The checker binary to use for `configured` (empty: the default).
pub fn resolve(configured: &Path) -> PathBuf {
    if !configured.as_os_str().is_empty() {
        return configured.to_path_buf();
    }
    if let Some(beside) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("picket-agent"))) {
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from("picket-agent")
}

/// Compile `files` with `checker` in a scratch directory under `scratch_root`.
pub async fn check(checker: &Path, scratch_root: &Path, files: &[RuleFile]) -> Result<CheckReport, CheckError> {
    let failed = |e: std::io::Error| CheckError::Failed(e.to_string());
    std::fs::create_dir_all(scratch_root).map_err(failed)?;
    let dir = tempfile::Builder::new().prefix("rules-check-").tempdir_in(scratch_root).map_err(failed)?;
    for f in files {
        // Names were validated ([A-Za-z0-9._-], no leading dot): no path escapes.
        std::fs::write(dir.path().join(&f.name), &f.source).map_err(failed)?;
    }
    let mut cmd = tokio::process::Command::new(checker);
    cmd.arg("rules").arg("check").arg("--json").arg("--no-includes").arg(dir.path()).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Err(_) => return Err(CheckError::Failed(format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(CheckError::Missing(checker.into())),
        Ok(Err(e)) => return Err(CheckError::Failed(e.to_string())),
        Ok(Ok(out)) => out,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(CheckError::Failed(format!(
            "{} exited with {}: {}",
            checker.display(),
            output.status,
            stderr.trim()
        )));
    }
    let mut report: CheckReport = serde_json::from_slice(&output.stdout)
        .map_err(|e| CheckError::Failed(format!("unreadable answer from {}: {e}", checker.display())))?;
    // Report file names as uploaded, not as scratch paths.
    let base = |p: &str| Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    report.loaded = report.loaded.iter().map(|f| base(f)).collect();
    for e in &mut report.errors {
        let scratch = dir.path().display().to_string();
        e.error = e.error.replace(&format!("{scratch}/"), "");
        e.file = base(&e.file);
    }
    Ok(report)
}
