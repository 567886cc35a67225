//! `stop_and_quarantine {path | sha256, paths?, force?, expected_sha256?}`:
//! kill what runs the file, remove the persistence that names it, move it
//! into the vault (see `crate::quarantine` for the steps and their crash
//! safety). By SHA-256, every copy in the quick-scan places (or `paths`) is
//! quarantined. `delete_file` is the same without killing.

use std::path::PathBuf;

use picket_common::actions::params;
use picket_common::actions::results::{PathError, QuarantineOutput, QuarantinedFile};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Context, Run};
use crate::platform::Feature;
use crate::protected::Protected;
use crate::quarantine::{self, Entry, QuarantineError, Request};
use crate::scan;

impl From<QuarantineError> for ActionFailure {
    fn from(e: QuarantineError) -> Self {
        match e {
            QuarantineError::Refused(m) => ActionFailure::invalid(m),
            QuarantineError::Failed(m) => ActionFailure::error(m),
        }
    }
}

pub struct StopAndQuarantine;

impl Action for StopAndQuarantine {
    const KIND: ActionKind = ActionKind::StopAndQuarantine;
    const NEEDS: &'static [Feature] = &[Feature::Files, Feature::Processes];
    type Params = params::Quarantine;
    type Output = QuarantineOutput;

    fn run(&self, p: params::Quarantine, run: &Run<'_>) -> Result<QuarantineOutput, ActionFailure> {
        quarantine_files(p, run, true)
    }
}

fn vaulted(e: &Entry) -> QuarantinedFile {
    QuarantinedFile {
        quarantine_id: e.id,
        path: e.path.clone(),
        sha256: e.sha256.clone(),
        size: e.size,
        killed_pids: e.killed_pids.clone(),
        persistence_removed: e.persistence.iter().map(|r| r.describe()).collect(),
    }
}

/// What quarantine never takes: the agent's state, its binary, secrets.
fn protected(ctx: &Context) -> Protected {
    let p = Protected::new(&ctx.state_dir);
    match std::env::current_exe() {
        Ok(exe) => p.with(exe),
        Err(_) => p,
    }
}

/// Quarantine the file (or every copy by SHA-256), killing what runs it
/// when `kill`.
pub(super) fn quarantine_files(
    p: params::Quarantine,
    run: &Run<'_>,
    kill: bool,
) -> Result<QuarantineOutput, ActionFailure> {
    let (ctx, progress) = (run.ctx, run.progress);
    let targets = match (&p.path, &p.sha256) {
        (Some(path), None) => vec![path.clone()],
        (None, Some(sha)) if kill => {
            let sha = sha.to_ascii_lowercase();
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
        match quarantine::quarantine(&ctx.vault, run.platform, &req) {
            Ok(e) => done.push(vaulted(&e)),
            Err(e) if targets.len() == 1 => return Err(e.into()),
            Err(e) => errors.push(PathError { path: path.clone(), error: e.to_string() }),
        }
    }
    if done.is_empty() {
        let why: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path.display(), e.error)).collect();
        return Err(ActionFailure::error(format!("no copy could be quarantined: {}", why.join("; "))));
    }
    Ok(QuarantineOutput::new(done, errors))
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
