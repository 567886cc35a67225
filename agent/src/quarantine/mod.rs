//! Stop and quarantine a file, and put it back.
//!
//! Quarantine, in this order, each step durable before the next:
//! 1. checks: a regular file (not followed through a symlink, its directory
//!    reached without untrusted links — see `fsutil::dir`), not under /proc,
//!    /sys or /dev, not the agent's own binary, state or a protected secret
//!    (checked on the open file), not owned by an installed package unless
//!    forced; when the coordinator names the SHA-256 it decided on, the
//!    content must have it;
//! 2. kill every process running it (device + inode, deleted or not);
//! 3. the vault entry is written in state `copying` with the persistence
//!    that references the file, then that persistence is removed;
//! 4. the file is encrypted into the vault (fsync), decrypted again and its
//!    hash checked → state `copied`;
//! 5. the original is unlinked through its directory's descriptor, only if
//!    the name still is the copied file (and the directory fsync'd) →
//!    `quarantined`.
//!
//! A crash anywhere leaves the file in place or in the vault, never
//! neither: [`recover`] (at agent start) rolls back an entry that did not
//! reach step 5 when the original is still there (persistence restored,
//! copy dropped), and completes one whose original is already gone.
//!
//! Release: refuse (the file stays in the vault) if any directory on the way
//! is an untrusted symlink or belongs to a user other than root and the
//! file's owner, if the directory is gone, or if a different file is at the
//! path; else decrypt into a temp file (`O_EXCL`) in that directory, verify
//! the hash, restore owner, mode and timestamps on the open file, rename
//! into place, fsync; then the persistence goes back.

pub mod vault;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use uuid::Uuid;

use crate::fault;
use crate::fsutil::{Dir, Owners, SafeError};

/// SHA-256 (hex) of an open file.
fn hash_open(f: &std::fs::File) -> std::io::Result<String> {
    crate::fsutil::hash::sha256_open(f).map(|(h, _)| h)
}
use crate::platform::linux::persistence;
use crate::platform::Platform;
use crate::protected::Protected;
pub use vault::{Entry, EntryState, PersistenceRecord, Vault};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The request is refused (bad path, own file, package file, …).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<vault::VaultError> for QuarantineError {
    fn from(e: vault::VaultError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// What to quarantine and how.
pub struct Request<'a> {
    pub path: &'a Path,
    /// Filesystem root for persistence places (`/` in production).
    pub root: &'a Path,
    /// Kill the processes running it (stop_and_quarantine) or not (delete_file).
    pub kill: bool,
    /// Quarantine even a file an installed package owns.
    pub force: bool,
    /// Files never quarantined (the agent's binary and state, secrets).
    pub protected: &'a Protected,
    /// Only quarantine the file if its content has this SHA-256 (what the
    /// coordinator decided on); checked before anything is changed.
    pub expected_sha256: Option<&'a str>,
    pub action_id: Option<Uuid>,
}

const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

fn refuse(m: impl Into<String>) -> QuarantineError {
    QuarantineError::Refused(m.into())
}

fn failed(m: impl Into<String>) -> QuarantineError {
    QuarantineError::Failed(m.into())
}

impl From<SafeError> for QuarantineError {
    fn from(e: SafeError) -> Self {
        match e {
            SafeError::Refused { .. } => Self::Refused(e.to_string()),
            SafeError::Io { .. } => Self::Failed(e.to_string()),
        }
    }
}

fn time_pair(sec: i64, nsec: i64) -> (i64, i64) {
    (sec, nsec)
}

/// Quarantine one file. Returns its vault entry.
///
/// Everything happens through the descriptor of the file's directory,
/// reached without untrusted symlinks: the file is opened there with
/// `O_NOFOLLOW`, and removed there only while that name still is the file
/// that was copied — a user who swaps a directory for a link meanwhile
/// cannot redirect the removal.
pub fn quarantine(vault: &Vault, platform: &dyn Platform, req: &Request<'_>) -> Result<Entry, QuarantineError> {
    let path = req.path;
    if !path.is_absolute() {
        return Err(refuse("path must be absolute"));
    }
    if PSEUDO.iter().any(|d| path.starts_with(d)) {
        return Err(refuse(format!("{} is a pseudo-file", path.display())));
    }
    let (dir, name) = Dir::open_parent(path, Owners::Any)?;
    let found = dir.stat(&name)?.ok_or_else(|| refuse(format!("{}: no such file", path.display())))?;
    if !found.is_file() {
        return Err(refuse(format!("{} is not a regular file (links are not followed)", path.display())));
    }
    let mut file = dir.open_file(&name)?;
    let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
    if let Some(why) = req.protected.refusal(&file) {
        return Err(refuse(format!("{why}: it belongs to the Picket agent itself or is a protected secret")));
    }
    // From here on, the path as the walk resolved it.
    let real = dir.path().join(&name);
    if !req.force {
        if let Ok(Some(package)) = platform.package_owner(&real) {
            return Err(refuse(format!(
                "{} belongs to the installed package {package}; set force to quarantine it anyway",
                real.display()
            )));
        }
    }
    if let Some(expected) = req.expected_sha256 {
        let actual = hash_open(&file).map_err(|e| failed(format!("reading {}: {e}", real.display())))?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(refuse(format!(
                "{} now has SHA-256 {actual}, not the expected {expected}; nothing was changed",
                real.display()
            )));
        }
    }

    let killed = if req.kill {
        platform.kill_executable(meta.dev(), meta.ino()).map_err(|e| failed(e.to_string()))?
    } else {
        Vec::new()
    };
    fault::point("quarantine.after_kill");

    let mut entry = Entry {
        id: Uuid::new_v4(),
        path: real.clone(),
        sha256: String::new(),
        size: meta.len(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        atime: time_pair(meta.atime(), meta.atime_nsec()),
        mtime: time_pair(meta.mtime(), meta.mtime_nsec()),
        killed_pids: killed,
        persistence: persistence_of(req.root, path, &real),
        state: EntryState::Copying,
        action_id: req.action_id,
        quarantined_at: crate::clock::now_rfc3339(),
    };
    vault.save(&entry)?;
    fault::point("quarantine.after_record");
    if let Err(e) = persistence::remove(&entry.persistence) {
        let _ = persistence::restore(&entry.persistence);
        vault.remove(entry.id);
        return Err(failed(e));
    }
    fault::point("quarantine.after_persistence");

    let sealed = vault.seal(entry.id, &mut file);
    let (sha256, size) = match sealed {
        Ok(s) => s,
        Err(e) => {
            rollback(vault, &entry);
            return Err(e.into());
        }
    };
    fault::point("quarantine.after_copy");
    let (check, _) = vault.open_blob(entry.id, &mut std::io::sink())?;
    let expected_ok = req.expected_sha256.is_none_or(|e| e.eq_ignore_ascii_case(&sha256));
    if check != sha256 || size != meta.len() || !expected_ok {
        rollback(vault, &entry);
        return Err(failed(format!("{} changed while it was copied; nothing was moved", real.display())));
    }
    entry.sha256 = sha256;
    entry.state = EntryState::Copied;
    vault.save(&entry)?;
    fault::point("quarantine.before_unlink");

    // Still the same file at that name? (replaced meanwhile: leave it)
    let now = dir.stat(&name)?;
    if now.map(|st| st.dev_ino()) != Some((meta.dev(), meta.ino())) {
        rollback(vault, &entry);
        return Err(failed(format!("{} was replaced during quarantine; nothing was moved", real.display())));
    }
    fault::point("quarantine.checked_before_unlink");
    // Only that name, in the directory checked — a directory swapped for a
    // link since then changes nothing — and only if it still is the file.
    if let Err(e) = dir.unlink(&name, Some((meta.dev(), meta.ino()))).and_then(|gone| {
        if gone {
            Ok(())
        } else {
            Err(SafeError::Refused { path: real.clone(), why: "disappeared during quarantine".into() })
        }
    }) {
        rollback(vault, &entry);
        return Err(failed(format!("cannot remove {}: {e}; nothing was moved", real.display())));
    }
    if let Err(error) = dir.sync() {
        tracing::warn!(%error, "cannot fsync the directory");
    }
    fault::point("quarantine.after_unlink");
    entry.state = EntryState::Quarantined;
    vault.save(&entry)?;
    tracing::warn!(id = %entry.id, path = %real.display(), sha256 = %entry.sha256, killed = ?entry.killed_pids,
        persistence = entry.persistence.len(), "file quarantined");
    Ok(entry)
}

/// The persistence that names the file by the path asked for or by its
/// real path (`/bin/x` and `/usr/bin/x` are one file).
fn persistence_of(root: &Path, asked: &Path, real: &Path) -> Vec<persistence::Removal> {
    let mut found = persistence::find(root, real);
    if asked != real {
        for r in persistence::find(root, asked) {
            if !found.contains(&r) {
                found.push(r);
            }
        }
    }
    found
}

/// Undo a quarantine that did not finish: persistence back, copy dropped.
fn rollback(vault: &Vault, entry: &Entry) {
    if let Err(error) = persistence::restore(&entry.persistence) {
        tracing::error!(%error, id = %entry.id, "could not put persistence back after a failed quarantine");
    }
    vault.remove(entry.id);
}

/// The directory a released file goes back to: reached without untrusted
/// symlinks, every directory on the way root's or the file owner's.
fn release_dir(entry: &Entry) -> Result<(Dir, std::ffi::OsString), QuarantineError> {
    Dir::open_parent(&entry.path, Owners::RootOr(entry.uid)).map_err(|e| match e {
        e if e.is_not_found() => refuse(format!(
            "{e}: the original directory is gone; recreate it, then release again (the file stays in the vault)"
        )),
        e => refuse(format!("{e}; the file stays in the vault")),
    })
}

/// The temp name a release writes before renaming into place.
fn release_temp(entry: &Entry) -> std::ffi::OsString {
    std::ffi::OsString::from(format!(".picket-release-{}", entry.id))
}

/// Write a quarantined file back. Returns the released entry.
///
/// The file is written only into its original directory, reached as
/// `release_dir` says; nothing is created on the way. A different file
/// now at the path is never overwritten.
pub fn release(vault: &Vault, id: Uuid) -> Result<Entry, QuarantineError> {
    let mut entry = vault.load(id)?.ok_or_else(|| refuse(format!("no quarantined file {id}")))?;
    match entry.state {
        EntryState::Quarantined | EntryState::Releasing => {}
        EntryState::Released => return Err(refuse(format!("{id} was already released to {}", entry.path.display()))),
        EntryState::Copying | EntryState::Copied => {
            return Err(refuse(format!("{id} did not finish quarantine; the file is still at its path")))
        }
    }
    let path = entry.path.clone();
    let (dir, name) = release_dir(&entry)?;
    let same_there = match dir.stat(&name)? {
        None => false,
        Some(st) => {
            let same = st.is_file()
                && dir.open_file(&name).ok().and_then(|f| hash_open(&f).ok()) == Some(entry.sha256.clone());
            if !same {
                return Err(refuse(format!(
                    "a different file is at {} now; it is left alone (move it away to release)",
                    path.display()
                )));
            }
            true
        }
    };
    entry.state = EntryState::Releasing;
    vault.save(&entry)?;
    let tmp = release_temp(&entry);
    let written = (|| -> Result<(), QuarantineError> {
        dir.unlink(&tmp, None)?;
        let mut out = dir.create_new(&tmp, 0o600)?;
        let (sha, _) = vault.open_blob(id, &mut out)?;
        if sha != entry.sha256 {
            return Err(failed(format!("the vault copy hashes to {sha}, not {}", entry.sha256)));
        }
        out.sync_all().map_err(|e| failed(e.to_string()))?;
        fault::point("release.after_write");
        std::os::unix::fs::fchown(&out, Some(entry.uid), Some(entry.gid))
            .map_err(|e| failed(format!("cannot restore the owner: {e}")))?;
        out.set_permissions(std::fs::Permissions::from_mode(entry.mode))
            .map_err(|e| failed(format!("cannot restore the mode: {e}")))?;
        set_times(&out, entry.atime, entry.mtime)?;
        // Never over a file that appeared meanwhile (unless it is this one).
        dir.rename(&tmp, &name, same_there).map_err(|e| failed(format!("cannot move into {}: {e}", path.display())))?;
        dir.sync().map_err(|e| failed(e.to_string()))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = dir.unlink(&tmp, None);
        entry.state = EntryState::Quarantined;
        vault.save(&entry)?;
        return Err(e);
    }
    fault::point("release.after_rename");
    persistence::restore(&entry.persistence).map_err(failed)?;
    entry.state = EntryState::Released;
    vault.save(&entry)?;
    vault.remove_blob(id);
    tracing::warn!(%id, path = %path.display(), "file released from quarantine");
    Ok(entry)
}

fn set_times(file: &std::fs::File, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), QuarantineError> {
    use nix::sys::time::TimeSpec;
    let ts = |(s, ns): (i64, i64)| TimeSpec::new(s, ns);
    nix::sys::stat::futimens(file, &ts(atime), &ts(mtime))
        .map_err(|e| failed(format!("cannot restore the timestamps: {e}")))
}

/// Finish or roll back what a crash interrupted (called at agent start).
/// Returns the entries it changed, as (id, what happened).
pub fn recover(vault: &Vault) -> Vec<(Uuid, &'static str)> {
    let mut out = Vec::new();
    for mut entry in vault.entries() {
        let original_here = Dir::open_parent(&entry.path, Owners::Any)
            .ok()
            .and_then(|(dir, name)| dir.stat(&name).ok().flatten())
            .is_some_and(|st| st.is_file());
        let outcome = match entry.state {
            EntryState::Quarantined | EntryState::Released => continue,
            EntryState::Copying | EntryState::Copied if original_here => {
                rollback(vault, &entry);
                "rolled back: the file is still at its path"
            }
            EntryState::Copying | EntryState::Copied => {
                // The original is gone: the vault copy is the file now, if it is whole.
                match vault.open_blob(entry.id, &mut std::io::sink()) {
                    Ok((sha, _)) if entry.sha256.is_empty() || sha == entry.sha256 => {
                        entry.sha256 = sha;
                        entry.state = EntryState::Quarantined;
                        let _ = vault.save(&entry);
                        "completed: the file is in the vault"
                    }
                    _ => {
                        tracing::error!(id = %entry.id, path = %entry.path.display(),
                            "a quarantine was interrupted and neither the path nor the vault holds the file; it was removed by someone else");
                        continue;
                    }
                }
            }
            EntryState::Releasing => {
                let tmp = release_temp(&entry);
                let back = release_dir(&entry).ok().and_then(|(dir, name)| {
                    let _ = dir.unlink(&tmp, None);
                    let f = dir.open_file(&name).ok()?;
                    Some(hash_open(&f).is_ok_and(|h| h == entry.sha256))
                });
                if back == Some(true) {
                    let _ = persistence::restore(&entry.persistence);
                    entry.state = EntryState::Released;
                    let _ = vault.save(&entry);
                    vault.remove_blob(entry.id);
                    "completed the release"
                } else {
                    entry.state = EntryState::Quarantined;
                    let _ = vault.save(&entry);
                    "release undone: the file stays in the vault"
                }
            }
        };
        tracing::warn!(id = %entry.id, path = %entry.path.display(), outcome, "interrupted quarantine recovered");
        out.push((entry.id, outcome));
    }
    out
}
