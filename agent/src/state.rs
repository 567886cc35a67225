//! The agent's state dir (mode 0700, every file 0600):
//!
//! - `device.key`  — the device's P-256 private key (made here, never sent)
//! - `device.pem`  — its certificate, SAN `urn:uuid:<device id>`
//! - `ca.pem`      — the Picket CA pinned at enrollment
//! - `enrollment.json` — device id, coordinator address, group; written
//!   last, so its presence means enrollment completed
//! - `status.json` — session state for `picket-agent status`

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("this device is not enrolled (no {0}); run `picket-agent enroll` first")]
    NotEnrolled(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrollment {
    pub device_id: Uuid,
    pub coordinator: String,
    pub group: String,
    pub ca_fingerprint: String,
    pub enrolled_at: String,
}

/// What `picket-agent run` reports about its session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    pub device_id: Uuid,
    pub coordinator: String,
    pub connected: bool,
    /// RFC 3339 time of the last frame from the coordinator.
    pub last_contact: Option<String>,
    pub last_error: Option<String>,
}

/// Everything needed to open the mutual-TLS session.
pub struct Identity {
    pub enrollment: Enrollment,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn is_enrolled(&self) -> bool {
        self.file("enrollment.json").exists()
    }

    /// Create the dir (0700) if needed.
    pub fn create(&self) -> Result<(), StateError> {
        let io = |source| StateError::Io { path: self.root.clone(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(io)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700)).map_err(io)
    }

    /// Store a completed enrollment. `enrollment.json` is written last.
    pub fn save_enrollment(
        &self,
        enrollment: &Enrollment,
        key_pem: &str,
        cert_der: &[u8],
        ca_der: &[u8],
    ) -> Result<(), StateError> {
        self.create()?;
        let _ = std::fs::remove_file(self.file("status.json"));
        self.write("device.key", key_pem.as_bytes())?;
        self.write("device.pem", pem::encode(&pem::Pem::new("CERTIFICATE", cert_der)).as_bytes())?;
        self.write("ca.pem", pem::encode(&pem::Pem::new("CERTIFICATE", ca_der)).as_bytes())?;
        let json = serde_json::to_vec_pretty(enrollment).map_err(|e| self.corrupt("enrollment.json", e))?;
        self.write("enrollment.json", &json)
    }

    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.file("enrollment.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NotEnrolled(path)),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| self.corrupt("enrollment.json", e))
    }

    /// Store a renewed key and certificate: both written beside the current
    /// ones, then renamed over them, the certificate last (see
    /// `Self::finish_renewal`).
    pub fn save_renewed(&self, key_pem: &str, cert_der: &[u8]) -> Result<(), StateError> {
        self.write("device.next.key", key_pem.as_bytes())?;
        self.write("device.next.pem", pem::encode(&pem::Pem::new("CERTIFICATE", cert_der)).as_bytes())?;
        self.finish_renewal()
    }

    /// Complete a renewal a crash interrupted: `device.next.pem` present
    /// means the pair is written; the key goes into place (if not yet),
    /// then the certificate.
    fn finish_renewal(&self) -> Result<(), StateError> {
        let next_pem = self.file("device.next.pem");
        if !next_pem.exists() {
            return Ok(());
        }
        let io = |path: PathBuf| move |source| StateError::Io { path, source };
        let next_key = self.file("device.next.key");
        if next_key.exists() {
            std::fs::rename(&next_key, self.file("device.key")).map_err(io(next_key))?;
        }
        std::fs::rename(&next_pem, self.file("device.pem")).map_err(io(next_pem))?;
        std::fs::File::open(&self.root).and_then(|d| d.sync_all()).map_err(io(self.root.clone()))
    }

    pub fn identity(&self) -> Result<Identity, StateError> {
        self.finish_renewal()?;
        let enrollment = self.enrollment()?;
        let cert = CertificateDer::from_pem_file(self.file("device.pem")).map_err(|e| self.corrupt("device.pem", e))?;
        let key = PrivateKeyDer::from_pem_file(self.file("device.key")).map_err(|e| self.corrupt("device.key", e))?;
        let ca = CertificateDer::from_pem_file(self.file("ca.pem")).map_err(|e| self.corrupt("ca.pem", e))?;
        Ok(Identity { enrollment, cert, key, ca })
    }

    pub fn write_status(&self, status: &Status) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(status).map_err(|e| self.corrupt("status.json", e))?;
        self.write("status.json", &json)
    }

    pub fn status(&self) -> Result<Option<Status>, StateError> {
        let path = self.file("status.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| self.corrupt("status.json", e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Remove a previous enrollment (for `enroll --force`).
    pub fn clear(&self) -> Result<(), StateError> {
        for name in [
            "enrollment.json",
            "device.pem",
            "device.key",
            "device.next.pem",
            "device.next.key",
            "ca.pem",
            "status.json",
        ] {
            let path = self.file(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Write `name` atomically with mode 0600 (temp file, fsync, rename).
    fn write(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let path = self.file(name);
        crate::fsutil::write_atomic(&path, data).map_err(|source| StateError::Io { path: path.clone(), source })
    }

    fn corrupt(&self, name: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Corrupt { path: self.file(name), detail: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_is_stored_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        assert!(!state.is_enrolled());
        assert!(matches!(state.enrollment(), Err(StateError::NotEnrolled(_))));
        let e = Enrollment {
            device_id: Uuid::new_v4(),
            coordinator: "127.0.0.1:7443".into(),
            group: "default".into(),
            ca_fingerprint: "ab".into(),
            enrolled_at: "now".into(),
        };
        state
            .save_enrollment(&e, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n", &[1, 2], &[3])
            .expect("save");
        assert!(state.is_enrolled());
        assert_eq!(state.enrollment().expect("read"), e);
        for name in ["device.key", "device.pem", "ca.pem", "enrollment.json"] {
            let mode = std::fs::metadata(state.file(name)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = std::fs::metadata(state.path()).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        state.clear().expect("clear");
        assert!(!state.is_enrolled());
    }
}
