//! Stop and quarantine a file, and put it back.
//!
//! Quarantine, in this order, each step durable before the next:
//! 1. checks: a regular file (not followed through a symlink), not under
//!    /proc, /sys or /dev, not the agent's own binary or state, not owned by
//!    an installed package unless forced; its SHA-256;
//! 2. kill every process running it (device + inode, deleted or not);
//! 3. the vault entry is written in state `copying` with the persistence
//!    that references the file, then that persistence is removed;
//! 4. the file is encrypted into the vault (fsync), decrypted again and its
//!    hash checked → state `copied`;
//! 5. the original is unlinked (and its directory fsync'd) → `quarantined`.
//!
//! A crash anywhere leaves the file in place or in the vault, never
//! neither: [`recover`] (at agent start) rolls back an entry that did not
//! reach step 5 when the original is still there (persistence restored,
//! copy dropped), and completes one whose original is already gone.
//!
//! Release: refuse if a different file is at the path; decrypt into a temp
//! file beside it, verify the hash, restore owner, mode and timestamps,
//! rename over the path, fsync; then the persistence goes back.

pub mod persistence;
pub mod vault;

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::fault;
use crate::platform::Platform;
pub use vault::{Entry, EntryState, Vault};

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
    /// Paths never quarantined (the agent's binary and state dir).
    pub protected: &'a [PathBuf],
    pub action_id: Option<Uuid>,
}

const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

fn refuse(m: impl Into<String>) -> QuarantineError {
    QuarantineError::Refused(m.into())
}

fn failed(m: impl Into<String>) -> QuarantineError {
    QuarantineError::Failed(m.into())
}

fn time_pair(sec: i64, nsec: i64) -> (i64, i64) {
    (sec, nsec)
}

/// Quarantine one file. Returns its vault entry.
pub fn quarantine(vault: &Vault, platform: &dyn Platform, req: &Request<'_>) -> Result<Entry, QuarantineError> {
    let path = req.path;
    if !path.is_absolute() {
        return Err(refuse("path must be absolute"));
    }
    if PSEUDO.iter().any(|d| path.starts_with(d)) {
        return Err(refuse(format!("{} is a pseudo-file", path.display())));
    }
    if req.protected.iter().any(|p| path.starts_with(p)) {
        return Err(refuse(format!("{} belongs to the Picket agent itself", path.display())));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(format!("{}: {e}", path.display())))?;
    if !meta.file_type().is_file() {
        return Err(refuse(format!("{} is not a regular file (links are not followed)", path.display())));
    }
    if !req.force {
        if let Ok(Some(package)) = platform.package_owner(path) {
            return Err(refuse(format!(
                "{} belongs to the installed package {package}; set force to quarantine it anyway",
                path.display()
            )));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| failed(format!("cannot open {}: {e}", path.display())))?;
    let meta = file.metadata().map_err(|e| failed(e.to_string()))?;

    let killed = if req.kill {
        platform.kill_executable(meta.dev(), meta.ino()).map_err(|e| failed(e.to_string()))?
    } else {
        Vec::new()
    };
    fault::point("quarantine.after_kill");

    let mut entry = Entry {
        id: Uuid::new_v4(),
        path: path.to_path_buf(),
        sha256: String::new(),
        size: meta.len(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        atime: time_pair(meta.atime(), meta.atime_nsec()),
        mtime: time_pair(meta.mtime(), meta.mtime_nsec()),
        killed_pids: killed,
        persistence: persistence::find(req.root, path),
        state: EntryState::Copying,
        action_id: req.action_id,
        quarantined_at: crate::enroll::now_rfc3339(),
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
    if check != sha256 || size != meta.len() {
        rollback(vault, &entry);
        return Err(failed(format!("{} changed while it was copied; nothing was moved", path.display())));
    }
    entry.sha256 = sha256;
    entry.state = EntryState::Copied;
    vault.save(&entry)?;
    fault::point("quarantine.before_unlink");

    // Still the same file at the path? (replaced meanwhile: leave it)
    let now = std::fs::symlink_metadata(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
        rollback(vault, &entry);
        return Err(failed(format!("{} was replaced during quarantine; nothing was moved", path.display())));
    }
    std::fs::remove_file(path).map_err(|e| {
        rollback(vault, &entry);
        failed(format!("cannot remove {}: {e}", path.display()))
    })?;
    sync_parent(path);
    fault::point("quarantine.after_unlink");
    entry.state = EntryState::Quarantined;
    vault.save(&entry)?;
    tracing::warn!(id = %entry.id, path = %path.display(), sha256 = %entry.sha256, killed = ?entry.killed_pids,
        persistence = entry.persistence.len(), "file quarantined");
    Ok(entry)
}

/// Undo a quarantine that did not finish: persistence back, copy dropped.
fn rollback(vault: &Vault, entry: &Entry) {
    if let Err(error) = persistence::restore(&entry.persistence) {
        tracing::error!(%error, id = %entry.id, "could not put persistence back after a failed quarantine");
    }
    vault.remove(entry.id);
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Err(error) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(%error, dir = %dir.display(), "cannot fsync the directory");
        }
    }
}

/// Write a quarantined file back. Returns the released entry.
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
    if let Ok(existing) = std::fs::symlink_metadata(&path) {
        let same = existing.is_file() && hash_file(&path).is_ok_and(|h| h == entry.sha256);
        if !same {
            return Err(refuse(format!(
                "a different file is at {} now; it is left alone (move it away to release)",
                path.display()
            )));
        }
    }
    entry.state = EntryState::Releasing;
    vault.save(&entry)?;
    let dir = path.parent().ok_or_else(|| failed("the path has no directory"))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.picket-release"));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| -> Result<(), QuarantineError> {
        let mut out = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed(format!("cannot write {}: {e}", tmp.display())))?;
        let (sha, _) = vault.open_blob(id, &mut out)?;
        if sha != entry.sha256 {
            return Err(failed(format!("the vault copy hashes to {sha}, not {}", entry.sha256)));
        }
        out.sync_all().map_err(|e| failed(e.to_string()))?;
        fault::point("release.after_write");
        std::os::unix::fs::chown(&tmp, Some(entry.uid), Some(entry.gid))
            .map_err(|e| failed(format!("cannot restore the owner: {e}")))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(entry.mode))
            .map_err(|e| failed(format!("cannot restore the mode: {e}")))?;
        set_times(&tmp, entry.atime, entry.mtime)?;
        std::fs::rename(&tmp, &path).map_err(|e| failed(format!("cannot move into {}: {e}", path.display())))?;
        sync_parent(&path);
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
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

fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), QuarantineError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = |(s, ns): (i64, i64)| TimeSpec::new(s, ns);
    utimensat(nix::fcntl::AT_FDCWD, path, &ts(atime), &ts(mtime), UtimensatFlags::NoFollowSymlink)
        .map_err(|e| failed(format!("cannot restore the timestamps: {e}")))
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Finish or roll back what a crash interrupted (called at agent start).
/// Returns the entries it changed, as (id, what happened).
pub fn recover(vault: &Vault) -> Vec<(Uuid, &'static str)> {
    let mut out = Vec::new();
    for mut entry in vault.entries() {
        let original_here = std::fs::symlink_metadata(&entry.path).is_ok_and(|m| m.is_file());
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
                let name = entry.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if let Some(dir) = entry.path.parent() {
                    let _ = std::fs::remove_file(dir.join(format!(".{name}.picket-release")));
                }
                if original_here && hash_file(&entry.path).is_ok_and(|h| h == entry.sha256) {
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
