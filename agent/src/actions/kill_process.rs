//! `kill_process {pid?, sha256?, grace_secs?}`: terminate one process (by
//! pid, optionally checked against the executable's SHA-256), or every
//! process running an executable with that SHA-256 (sha256 alone).
//! Not re-runnable after a crash: the pid may belong to another process by then.

use std::time::Duration;

use picket_common::actions::params as wire;
use picket_common::actions::ActionKind;
use serde_json::{json, Value};

use super::ActionFailure;
use crate::platform::{KillRequest, Platform};

pub fn run(platform: &dyn Platform, params: &str) -> Result<Value, ActionFailure> {
    let p: wire::KillProcess = wire::parse(ActionKind::KillProcess, params).map_err(ActionFailure::invalid)?;
    if p.grace_secs > 300 {
        return Err(ActionFailure::invalid("grace_secs must be at most 300"));
    }
    if let Some(h) = &p.sha256 {
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ActionFailure::invalid("sha256 must be 64 hex digits"));
        }
    }
    let grace = Duration::from_secs(p.grace_secs);
    match (p.pid, p.sha256) {
        (Some(pid), sha256) => {
            let report = platform.kill_process(&KillRequest { pid, sha256, grace })?;
            serde_json::to_value(report).map_err(|e| ActionFailure::error(e.to_string()))
        }
        (None, Some(sha256)) => {
            let pids = platform.processes_running(&sha256)?;
            let mut killed = Vec::new();
            let mut errors = Vec::new();
            for pid in pids {
                // The hash is checked again right before each signal.
                match platform.kill_process(&KillRequest { pid, sha256: Some(sha256.clone()), grace }) {
                    Ok(r) => killed.push(r),
                    Err(e) => errors.push(format!("pid {pid}: {e}")),
                }
            }
            if killed.is_empty() && !errors.is_empty() {
                return Err(ActionFailure::error(errors.join("; ")));
            }
            Ok(json!({ "sha256": sha256, "killed": killed, "errors": errors }))
        }
        (None, None) => Err(ActionFailure::invalid("kill_process needs pid or sha256")),
    }
}
