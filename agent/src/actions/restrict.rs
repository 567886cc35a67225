//! `restrict_code {allow_sha256, allow_paths}` / `release_code`: only
//! packaged, unchanged executables (and the allowed ones, and the agent)
//! may run. The policy is persisted in `<state dir>/restriction.json` and
//! re-applied when the agent starts. Each refused exec is raised as an
//! alert (rule `Picket_Restricted_Execution`, suspicious). The watched
//! mounts come from the agent config (`restrict_scope`; empty: every local
//! file system).

use std::path::Path;
use std::sync::Arc;

use picket_common::actions::params as wire;
use picket_common::actions::ActionKind;
use picket_common::detection::{Detection, Severity};
use serde_json::{json, Value};

use super::{ActionFailure, Context};
use crate::alerts::AlertQueue;
use crate::fsutil::write_atomic;
use crate::platform::{BlockedExec, Platform, RestrictPolicy};

const STATE_FILE: &str = "restriction.json";

fn reporter(alerts: Arc<AlertQueue>) -> Arc<dyn Fn(BlockedExec) + Send + Sync> {
    Arc::new(move |b: BlockedExec| {
        let d = Detection {
            path: b.path.display().to_string(),
            sha256: b.sha256,
            size: b.size,
            rule: "Picket_Restricted_Execution".into(),
            namespace: "restrict_code".into(),
            severity: Severity::Suspicious,
        };
        let uid = b.uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into());
        alerts.raise(&format!("restrict_code pid={} uid={uid}", b.pid), vec![d]);
    })
}

pub fn restrict(platform: &dyn Platform, ctx: &Context, params: &str) -> Result<Value, ActionFailure> {
    let p: wire::RestrictCode = wire::parse(ActionKind::RestrictCode, params).map_err(ActionFailure::invalid)?;
    if let Some(bad) = p.allow_sha256.iter().find(|h| !picket_common::detection::is_sha256_hex(&h.to_ascii_lowercase()))
    {
        return Err(ActionFailure::invalid(format!("allow_sha256: {bad:?} is not a SHA-256")));
    }
    if let Some(bad) = p.allow_paths.iter().find(|p| !p.is_absolute()) {
        return Err(ActionFailure::invalid(format!("allow_paths: {} is not absolute", bad.display())));
    }
    let policy =
        RestrictPolicy { allow_sha256: p.allow_sha256, allow_paths: p.allow_paths, scope: ctx.restrict_scope.clone() };
    let applied = platform.restrict_code(&policy, reporter(ctx.alerts.clone()))?;
    let json = serde_json::to_vec_pretty(&policy).map_err(|e| ActionFailure::error(e.to_string()))?;
    write_atomic(&ctx.state_dir.join(STATE_FILE), &json)
        .map_err(|e| ActionFailure::error(format!("restricted, but cannot persist it: {e}")))?;
    Ok(json!({ "applied": applied, "policy": policy }))
}

pub fn release(platform: &dyn Platform, ctx: &Context) -> Result<Value, ActionFailure> {
    let released = platform.release_code()?;
    match std::fs::remove_file(ctx.state_dir.join(STATE_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ActionFailure::error(format!("released, but cannot clear the persisted policy: {e}"))),
    }
    Ok(json!({ "released": released }))
}

/// Re-apply a persisted restriction (at agent start). Returns whether code
/// is restricted.
pub fn reapply(platform: &dyn Platform, state_dir: &Path, alerts: Arc<AlertQueue>) -> Result<bool, String> {
    let path = state_dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let policy: RestrictPolicy = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    platform.restrict_code(&policy, reporter(alerts)).map_err(|e| e.to_string())?;
    Ok(true)
}
