//! The action journal: one small JSON file per action id under
//! `<state dir>/journal/`, each write fsync'd (file, then directory).
//!
//! It is what makes an action run at most once and its result reach the
//! coordinator at least once:
//! - `received` is written before anything runs, so a repeated delivery of
//!   the same id is recognised;
//! - `running` is written before the platform is touched, so a crash in the
//!   middle is known at the next start (reported `interrupted`, or re-run for
//!   kinds declared re-runnable);
//! - `finished` holds the outcome until the coordinator acknowledges it (the
//!   outbox), and is replayed on every reconnect.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use picket_common::actions::{ActionKind, ActionOutcome};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    Received,
    Running,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub action_id: Uuid,
    pub kind: ActionKind,
    pub params_json: String,
    pub state: EntryState,
    pub outcome: Option<ActionOutcome>,
    /// The coordinator has stored the outcome.
    pub acked: bool,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
#[error("action journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: std::io::Error,
}

impl JournalError {
    pub fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        Self { path, source }
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("journal");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| JournalError { path: dir.clone(), source })?;
        Ok(Self { dir })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Durably write `entry` (temp file, fsync, rename, fsync the directory).
    pub fn record(&self, entry: &Entry) -> Result<(), JournalError> {
        let path = self.path(entry.action_id);
        let err = |source| JournalError { path: path.clone(), source };
        let bytes = serde_json::to_vec(entry).map_err(|e| err(std::io::Error::other(e)))?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(err)
    }

    pub fn get(&self, id: Uuid) -> Result<Option<Entry>, JournalError> {
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Self::parse(&path, &bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError { path, source }),
        }
    }

    /// Every entry. An unreadable file is logged and skipped, never fatal.
    pub fn all(&self) -> Result<Vec<Entry>, JournalError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| JournalError { path: self.dir.clone(), source })?;
        let mut out = Vec::new();
        for item in rd.flatten() {
            let path = item.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::read(&path) {
                    Ok(bytes) => out.extend(Self::parse(&path, &bytes)),
                    Err(error) => tracing::warn!(%error, path = %path.display(), "unreadable journal entry skipped"),
                }
            }
        }
        Ok(out)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Option<Entry> {
        match serde_json::from_slice(bytes) {
            Ok(e) => Some(e),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "corrupt journal entry skipped");
                None
            }
        }
    }

    /// Remove acknowledged entries older than `keep` (the coordinator never
    /// resends an action whose result it stored).
    pub fn prune(&self, keep: std::time::Duration) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        for item in rd.flatten() {
            let path = item.path();
            let old = item
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > keep);
            if old && std::fs::read(&path).ok().and_then(|b| Self::parse(&path, &b)).is_some_and(|e| e.acked) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_corrupt_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path()).expect("open");
        let e = Entry {
            action_id: Uuid::new_v4(),
            kind: ActionKind::KillProcess,
            params_json: "{}".into(),
            state: EntryState::Received,
            outcome: None,
            acked: false,
            updated_at: "t".into(),
        };
        j.record(&e).expect("record");
        std::fs::write(dir.path().join("journal").join(format!("{}.json", Uuid::new_v4())), b"{not json")
            .expect("junk");
        let j = Journal::open(dir.path()).expect("reopen");
        assert_eq!(j.get(e.action_id).expect("get"), Some(e.clone()));
        assert_eq!(j.all().expect("all"), vec![e]);
    }
}
