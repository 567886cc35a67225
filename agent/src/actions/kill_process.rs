//! `kill_process {pid, sha256?, grace_secs?}`: terminate one process.
//! Not re-runnable after a crash: the pid may belong to another process by then.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ActionFailure;
use crate::platform::{KillRequest, Platform};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pid: i32,
    /// Executable SHA-256 the process must have (protects against pid reuse).
    #[serde(default)]
    sha256: Option<String>,
    /// Seconds between SIGTERM and SIGKILL (0: SIGKILL at once; at most 300).
    #[serde(default)]
    grace_secs: u64,
}

pub fn run(platform: &dyn Platform, params: &str) -> Result<Value, ActionFailure> {
    let p: Params =
        serde_json::from_str(params).map_err(|e| ActionFailure::invalid(format!("kill_process params: {e}")))?;
    if p.grace_secs > 300 {
        return Err(ActionFailure::invalid("grace_secs must be at most 300"));
    }
    if let Some(h) = &p.sha256 {
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ActionFailure::invalid("sha256 must be 64 hex digits"));
        }
    }
    let report = platform.kill_process(&KillRequest {
        pid: p.pid,
        sha256: p.sha256,
        grace: Duration::from_secs(p.grace_secs),
    })?;
    serde_json::to_value(report).map_err(|e| ActionFailure::error(e.to_string()))
}
