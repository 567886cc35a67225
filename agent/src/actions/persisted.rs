//! What an action applied that must outlive the agent process.

/// A policy an action applied that must outlive the agent process
/// (isolation, code restriction): `<state dir>/<file>`, JSON, written
/// atomically (0600, fsync), re-applied at start, forgotten on release.
pub struct Persisted<T> {
    file: &'static str,
    policy: std::marker::PhantomData<fn() -> T>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Persisted<T> {
    pub const fn new(file: &'static str) -> Self {
        Self { file, policy: std::marker::PhantomData }
    }

    pub fn save(&self, state_dir: &std::path::Path, policy: &T) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(policy).map_err(|e| e.to_string())?;
        crate::fsutil::write_atomic(&state_dir.join(self.file), &json).map_err(|e| e.to_string())
    }

    /// The persisted policy; `None` when there is none.
    pub fn load(&self, state_dir: &std::path::Path) -> Result<Option<T>, String> {
        let path = state_dir.join(self.file);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Remove it; a missing one is no error.
    pub fn forget(&self, state_dir: &std::path::Path) -> Result<(), String> {
        match std::fs::remove_file(state_dir.join(self.file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}
