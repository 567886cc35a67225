//! `stop_and_quarantine`, `delete_file`, `release_from_quarantine` and
//! `remove_persistence` (see `crate::quarantine` for the steps and their
//! crash safety).
//!
//! - `stop_and_quarantine {path | sha256, paths?, force?}`: by SHA-256, every
//!   copy in the quick-scan places (or `paths`) is quarantined.
//! - `delete_file {path, force?}`: the same without killing processes (the
//!   copy stays in the vault, so it can be released).
//! - `release_from_quarantine {quarantine_id}`: one id or a list (the undo of
//!   a quarantine of several copies).
//! - `remove_persistence {path}`: only the persistence that references
//!   `path` (cron, systemd, rc.local, profiles, ld.so.preload, autostart,
//!   authorized_keys `command=`); the removals are in the result.

use std::path::PathBuf;

use picket_common::actions::params as wire;
use picket_common::actions::ActionKind;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ActionFailure, Context, Progress};
use crate::platform::Platform;
use crate::protected::Protected;
use crate::quarantine::{self, persistence, Entry, QuarantineError, Request};
use crate::scan;

impl From<QuarantineError> for ActionFailure {
    fn from(e: QuarantineError) -> Self {
        match e {
            QuarantineError::Refused(m) => ActionFailure::invalid(m),
            QuarantineError::Failed(m) => ActionFailure::error(m),
        }
    }
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "quarantine_id": e.id,
        "path": e.path,
        "sha256": e.sha256,
        "size": e.size,
        "killed_pids": e.killed_pids,
        "persistence_removed": e.persistence.iter().map(|r| r.describe()).collect::<Vec<_>>(),
    })
}

/// What quarantine never takes: the agent's state, its binary, secrets.
fn protected(ctx: &Context) -> Protected {
    let p = Protected::new(&ctx.state_dir);
    match std::env::current_exe() {
        Ok(exe) => p.with(exe),
        Err(_) => p,
    }
}

pub fn stop_and_quarantine(
    platform: &dyn Platform,
    ctx: &Context,
    params: &str,
    progress: &Progress,
    kill: bool,
) -> Result<Value, ActionFailure> {
    let kind = if kill { ActionKind::StopAndQuarantine } else { ActionKind::DeleteFile };
    let p: wire::Quarantine = wire::parse(kind, params).map_err(ActionFailure::invalid)?;
    if let Some(e) = &p.expected_sha256 {
        if !picket_common::detection::is_sha256_hex(&e.to_ascii_lowercase()) {
            return Err(ActionFailure::invalid("expected_sha256 must be 64 hex digits"));
        }
    }
    let targets = match (&p.path, &p.sha256) {
        (Some(path), None) => vec![path.clone()],
        (None, Some(sha)) if kill => {
            let sha = sha.to_ascii_lowercase();
            if !picket_common::detection::is_sha256_hex(&sha) {
                return Err(ActionFailure::invalid("sha256 must be 64 hex digits"));
            }
            progress.report("looking for copies", 0);
            let report = |files: u64, _| progress.report(&format!("looking for copies: {files} files"), 0);
            // An explicit request searches longer than an investigation does.
            let budget = scan::copies::Budget { time: std::time::Duration::from_secs(1800), bytes: u64::MAX };
            let found = copies(ctx, &sha, None, &p.paths, budget, &report);
            if found.paths.is_empty() {
                let why = found.stopped.map(|s| format!(" (search stopped: {s})")).unwrap_or_default();
                return Err(ActionFailure::error(format!("no file with SHA-256 {sha} was found{why}")));
            }
            found.paths
        }
        _ if !kill => return Err(ActionFailure::invalid("give path")),
        _ => return Err(ActionFailure::invalid("give path or sha256, not both")),
    };
    let protected = protected(ctx);
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for path in &targets {
        let req = Request {
            path,
            root: &ctx.persistence_root,
            kill,
            force: p.force,
            protected: &protected,
            // By SHA-256, every copy found must still have it.
            expected_sha256: p.expected_sha256.as_deref().or(p.sha256.as_deref()),
            action_id: Some(progress.action_id()),
        };
        match quarantine::quarantine(&ctx.vault, platform, &req) {
            Ok(e) => done.push(e),
            Err(e) if targets.len() == 1 => return Err(e.into()),
            Err(e) => errors.push(json!({ "path": path, "error": e.to_string() })),
        }
    }
    if done.is_empty() {
        return Err(ActionFailure::error(format!("no copy could be quarantined: {}", json!(errors))));
    }
    let ids: Vec<Uuid> = done.iter().map(|e| e.id).collect();
    let mut out = if done.len() == 1 { entry_json(&done[0]) } else { json!({ "quarantine_id": ids }) };
    out["files"] = done.iter().map(entry_json).collect();
    out["errors"] = json!(errors);
    Ok(out)
}

/// Other copies of a file by SHA-256 under the search roots (default: the
/// quick-scan places), never in the agent's state or pseudo file systems.
pub(super) fn copies(
    ctx: &Context,
    sha256: &str,
    size: Option<u64>,
    paths: &[PathBuf],
    budget: scan::copies::Budget,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> scan::copies::Copies {
    let roots = if paths.is_empty() { scan::targets::quick() } else { paths.to_vec() };
    let mut skip = scan::targets::excluded_mounts();
    skip.push(ctx.state_dir.clone());
    scan::copies::find(&scan::copies::Query { roots: &roots, sha256, size, skip: &skip, budget }, progress)
}

pub fn release(ctx: &Context, params: &str) -> Result<Value, ActionFailure> {
    let p: wire::ReleaseFromQuarantine = wire::parse(ActionKind::ReleaseFromQuarantine, params)
        .map_err(|e| ActionFailure::invalid(format!("{e} (quarantine_id: a UUID or a list of UUIDs)")))?;
    let ids = p.quarantine_id.ids();
    let mut released = Vec::new();
    for id in ids {
        let e = quarantine::release(&ctx.vault, id)?;
        released.push(json!({ "quarantine_id": e.id, "path": e.path, "sha256": e.sha256,
            "persistence_restored": e.persistence.iter().map(|r| r.describe()).collect::<Vec<_>>() }));
    }
    Ok(json!({ "released": released, "undo_of": p.undo_of }))
}

pub fn remove_persistence(ctx: &Context, params: &str) -> Result<Value, ActionFailure> {
    let p: wire::RemovePersistence =
        wire::parse(ActionKind::RemovePersistence, params).map_err(ActionFailure::invalid)?;
    if !p.path.is_absolute() {
        return Err(ActionFailure::invalid("path must be absolute"));
    }
    let found = persistence::find(&ctx.persistence_root, &p.path);
    persistence::remove(&found).map_err(ActionFailure::error)?;
    Ok(json!({
        "path": p.path,
        "removed": found.iter().map(|r| r.describe()).collect::<Vec<_>>(),
        "removals": found,
    }))
}
