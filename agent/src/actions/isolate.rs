//! `isolate {mode: full|selective, exclusions, allow_dns, allow_dhcp}` and
//! `release_isolation`. Re-runnable: applying or removing the same table
//! again gives the same state.
//!
//! The applied policy is persisted in `<state dir>/isolation.json` and
//! re-applied when the agent starts, before it connects.

use std::net::ToSocketAddrs;
use std::path::Path;

use picket_common::actions::params as wire;
use picket_common::actions::ActionKind;
use serde_json::{json, Value};

use super::{ActionFailure, Context};
use crate::platform::{IsolationMode, IsolationPolicy, Platform};

const STATE_FILE: &str = "isolation.json";

pub fn isolate(platform: &dyn Platform, ctx: &Context, params: &str) -> Result<Value, ActionFailure> {
    let p: wire::Isolate = wire::parse(ActionKind::Isolate, params).map_err(ActionFailure::invalid)?;
    if p.mode == IsolationMode::Full && (!p.exclusions.is_empty() || p.allow_dns || p.allow_dhcp) {
        return Err(ActionFailure::invalid("exclusions, allow_dns and allow_dhcp need mode \"selective\""));
    }
    let coordinator: Vec<_> = ctx
        .coordinator
        .to_socket_addrs()
        .map_err(|e| ActionFailure::error(format!("cannot resolve the coordinator {}: {e}", ctx.coordinator)))?
        .collect();
    let policy = IsolationPolicy {
        mode: p.mode,
        coordinator,
        exclusions: p.exclusions,
        allow_dns: p.allow_dns,
        allow_dhcp: p.allow_dhcp,
    };
    let rules = platform.isolate(&policy)?;
    save(&ctx.state_dir, &policy).map_err(|e| ActionFailure::error(format!("isolated, but cannot persist it: {e}")))?;
    Ok(
        json!({ "mode": policy.mode, "coordinator": policy.coordinator, "exclusions": policy.exclusions, "rules": rules }),
    )
}

pub fn release(platform: &dyn Platform, ctx: &Context, params: &str) -> Result<Value, ActionFailure> {
    let _: wire::Release = wire::parse(ActionKind::ReleaseIsolation, params).map_err(ActionFailure::invalid)?;
    let removed = platform.release_isolation()?;
    match std::fs::remove_file(ctx.state_dir.join(STATE_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ActionFailure::error(format!("released, but cannot clear the persisted isolation: {e}"))),
    }
    Ok(json!({ "released": removed }))
}

/// Re-apply a persisted isolation (at agent start, before connecting).
/// Returns whether the device is isolated.
pub fn reapply(platform: &dyn Platform, state_dir: &Path) -> Result<bool, String> {
    let path = state_dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let policy: IsolationPolicy = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    platform.isolate(&policy).map_err(|e| e.to_string())?;
    Ok(true)
}

fn save(state_dir: &Path, policy: &IsolationPolicy) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = state_dir.join(".isolation.json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(policy).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, state_dir.join(STATE_FILE))?;
    std::fs::File::open(state_dir)?.sync_all()
}
