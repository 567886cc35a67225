//! `request_sample {path}`: send a copy of one regular file to the
//! coordinator (chunked, resumable; see `upload.rs`). Directories, devices,
//! sockets, fifos and anything under /proc, /sys or /dev are refused. The
//! file's directory is reached without untrusted symlinks and the file is
//! opened there with `O_NOFOLLOW` (`fsutil::dir`); the *opened* file is then
//! checked against what Picket never hands out — the agent's state dir (its
//! private key, the vault key), its configuration, shadow files and private
//! keys — by real path and by inode (`protected.rs`). Re-runnable: a re-run
//! resumes the upload.

use picket_common::actions::params;
use picket_common::actions::results::SampleOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::fsutil::dir::real_path;
use crate::fsutil::{Dir, Owners, SafeError};
use crate::platform::Feature;
use crate::protected::Protected;

const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

fn safe_failure(e: SafeError) -> ActionFailure {
    match e {
        SafeError::Refused { .. } => ActionFailure::invalid(e.to_string()),
        SafeError::Io { .. } if e.is_not_found() => ActionFailure::invalid(e.to_string()),
        SafeError::Io { .. } => ActionFailure::error(e.to_string()),
    }
}

pub struct RequestSample;

impl Action for RequestSample {
    const KIND: ActionKind = ActionKind::RequestSample;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::RequestSample;
    type Output = SampleOutput;

    fn run(&self, p: params::RequestSample, run: &Run<'_>) -> Result<SampleOutput, ActionFailure> {
        sample(p, run)
    }
}

fn sample(p: params::RequestSample, run: &Run<'_>) -> Result<SampleOutput, ActionFailure> {
    let (ctx, progress) = (run.ctx, run.progress);
    let path = p.path;
    if !path.is_absolute() {
        return Err(ActionFailure::invalid("path must be absolute"));
    }
    if PSEUDO.iter().any(|d| path.starts_with(d)) {
        return Err(ActionFailure::invalid(format!("{} is a pseudo-file, not a file on disk", path.display())));
    }
    let (dir, name) = Dir::open_parent(&path, Owners::Any).map_err(safe_failure)?;
    let found = dir.stat(&name).map_err(safe_failure)?;
    let found = found.ok_or_else(|| ActionFailure::invalid(format!("{}: no such file", path.display())))?;
    if !found.is_file() {
        return Err(ActionFailure::invalid(format!("{} is {}", path.display(), found.kind())));
    }
    let file = dir.open_file(&name).map_err(safe_failure)?;
    let meta = file.metadata().map_err(|e| ActionFailure::error(e.to_string()))?;
    let real = real_path(&file).unwrap_or_else(|| path.clone());
    if PSEUDO.iter().any(|d| real.starts_with(d)) {
        return Err(ActionFailure::invalid(format!("{} leads to {}, a pseudo-file", path.display(), real.display())));
    }
    if let Some(why) = Protected::new(&ctx.state_dir).refusal(&file) {
        tracing::warn!(path = %path.display(), %why, "sample of a protected file refused");
        return Err(ActionFailure::invalid(format!("refused: {why}")));
    }
    progress.report("hashing", 0);
    let (sha256, size) = crate::fsutil::hash::sha256_open(&file)
        .map_err(|e| ActionFailure::error(format!("reading {}: {e}", path.display())))?;
    if size != meta.len() {
        return Err(ActionFailure::error(format!("{} changed while it was read", path.display())));
    }
    let report = |held: u64| {
        let pct = held.saturating_mul(100).checked_div(size).unwrap_or(100);
        progress.report(&format!("uploaded {} of {} KiB", held / 1024, size / 1024), u8::try_from(pct).unwrap_or(100));
    };
    ctx.uploader.upload(progress.action_id(), &file, size, &sha256, &report).map_err(ActionFailure::error)?;
    Ok(SampleOutput { path, sha256, size })
}
