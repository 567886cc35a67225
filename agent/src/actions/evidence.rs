//! `collect_evidence {path, sha256?, search_paths?}` (read-only, for
//! investigations): the file (exists? its SHA-256, size, owner, mode,
//! mtime, whether a package owns it), the processes running it with their
//! parents and network connections, the persistence that references it,
//! and other copies with the same SHA-256 (in the quick-scan places, or
//! `search_paths`).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ActionFailure, Context, Progress};
use crate::platform::Platform;
use crate::quarantine::persistence;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    path: PathBuf,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    search_paths: Vec<PathBuf>,
}

fn exe_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string())
}

fn ppid_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

pub fn run(platform: &dyn Platform, ctx: &Context, params: &str, progress: &Progress) -> Result<Value, ActionFailure> {
    let p: Params = serde_json::from_str(params).map_err(|e| ActionFailure::invalid(format!("params: {e}")))?;
    if !p.path.is_absolute() {
        return Err(ActionFailure::invalid("path must be absolute"));
    }
    progress.report("examining the file", 10);
    let meta = std::fs::symlink_metadata(&p.path).ok().filter(|m| m.is_file());
    let actual = meta.as_ref().and_then(|_| crate::quarantine::hash_file(&p.path).ok());
    let sha256 = p.sha256.clone().map(|s| s.to_ascii_lowercase()).or_else(|| actual.clone());
    let file = json!({
        "path": p.path,
        "exists": meta.is_some(),
        "sha256": actual,
        "size": meta.as_ref().map(|m| m.len()),
        "uid": meta.as_ref().map(|m| m.uid()),
        "mode": meta.as_ref().map(|m| format!("{:o}", m.mode() & 0o7777)),
        "mtime": meta.as_ref().map(|m| m.mtime()),
        "package": platform.package_owner(&p.path).ok().flatten(),
    });
    progress.report("processes", 30);
    let mut pids = match &sha256 {
        Some(h) => platform.processes_running(h).unwrap_or_default(),
        None => Vec::new(),
    };
    pids.sort_unstable();
    let sockets = crate::collect::sockets();
    let processes: Vec<Value> = pids
        .iter()
        .map(|pid| {
            let parent = ppid_of(*pid);
            let connections: Vec<&Value> = sockets.iter().filter(|s| s["pid"] == json!(pid)).collect();
            json!({
                "pid": pid,
                "executable": exe_of(*pid),
                "ppid": parent,
                "parent_executable": parent.and_then(exe_of),
                "connections": connections,
            })
        })
        .collect();
    progress.report("persistence", 50);
    let persistence: Vec<Value> = persistence::find(&ctx.persistence_root, &p.path)
        .iter()
        .map(|r| json!({ "what": r.describe(), "removal": r }))
        .collect();
    progress.report("other copies", 70);
    let copies: Vec<PathBuf> = match &sha256 {
        Some(h) => {
            let scope = if ctx.evidence_search_paths.is_empty() { &p.search_paths } else { &ctx.evidence_search_paths };
            super::quarantine::copies(ctx, h, scope).into_iter().filter(|c| *c != p.path).collect()
        }
        None => Vec::new(),
    };
    Ok(json!({
        "file": file,
        "processes": processes,
        "persistence": persistence,
        "copies": copies,
    }))
}
