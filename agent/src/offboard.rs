//! Offboarding: release what the agent imposed on the device, then remove
//! its identity (key, certificate, pinned CA), journal and state, and
//! disable the service. Two ways in:
//! - the `offboard` action from the coordinator: the cleanup runs once the
//!   coordinator has acknowledged the result (so the report is never lost);
//! - `picket-agent offboard --token pko_…` on a machine that cannot reach the
//!   coordinator: the token names this device, has not expired, and is
//!   signed by the CA pinned at enrollment.

use std::path::Path;

use picket_common::actions::results::OffboardOutput;
use picket_common::offboarding;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use uuid::Uuid;

use crate::platform::{Platform, PlatformError};
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot release isolation: {0}")]
    Release(PlatformError),
    #[error("cannot remove {path}: {source}")]
    Remove { path: String, source: std::io::Error },
}

/// Undo what the agent imposed, as its state records it (isolation; later
/// code restriction). Nothing recorded, nothing touched.
pub fn release_all(platform: &dyn Platform, state_dir: &Path) -> Result<OffboardOutput, OffboardError> {
    let isolation = state_dir.join("isolation.json");
    let released = if isolation.exists() {
        platform.release_isolation().map_err(OffboardError::Release)?;
        remove(&isolation)?;
        true
    } else {
        false
    };
    let restriction = state_dir.join("restriction.json");
    let unrestricted = if restriction.exists() {
        platform.release_code().map_err(OffboardError::Release)?;
        remove(&restriction)?;
        true
    } else {
        false
    };
    Ok(OffboardOutput { isolation_released: released, restriction_released: unrestricted })
}

/// Remove the identity, journal and state files, then disable the service
/// when running under systemd.
pub fn wipe(state: &StateDir) -> Result<(), OffboardError> {
    state.clear()?;
    let journal = state.path().join("journal");
    match std::fs::remove_dir_all(&journal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(OffboardError::Remove { path: journal.display().to_string(), source }),
    }
    remove(&state.path().join("isolation.json"))?;
    remove(&state.path().join("restriction.json"))?;
    for dir in ["alerts", "content"] {
        let path = state.path().join(dir);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OffboardError::Remove { path: path.display().to_string(), source }),
        }
    }
    if std::env::var_os("INVOCATION_ID").is_some() {
        // Started by systemd: keep it from starting us again at boot.
        let disabled = std::process::Command::new("systemctl").args(["disable", "picket-agent"]).status();
        if !disabled.is_ok_and(|s| s.success()) {
            tracing::warn!("could not disable picket-agent.service; disable it by hand");
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), OffboardError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OffboardError::Remove { path: path.display().to_string(), source }),
    }
}

/// Check a local offboarding token against this device's enrollment.
pub fn verify_token(state: &StateDir, token: &str, now_ms: i64) -> Result<(), OffboardError> {
    let bad = |m: String| OffboardError::Token(m);
    let enrollment = state.enrollment()?;
    let ca = CertificateDer::from_pem_file(state.path().join("ca.pem"))
        .map_err(|e| bad(format!("pinned CA unreadable: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&ca).map_err(|e| bad(format!("pinned CA unreadable: {e}")))?;
    let key = cert.public_key().subject_public_key.data.to_vec();
    offboarding::verify(token, &key, enrollment.device_id, now_ms).map(|_| ()).map_err(bad)
}

/// What `picket-agent offboard --token` did.
#[derive(Debug)]
pub struct LocalOffboard {
    pub device_id: Uuid,
    pub released: OffboardOutput,
}

/// `picket-agent offboard --token`: verify, release, wipe.
pub fn offboard_locally(
    platform: &dyn Platform,
    state: &StateDir,
    token: &str,
) -> Result<LocalOffboard, OffboardError> {
    let now = crate::clock::now_ms();
    verify_token(state, token, now)?;
    let device_id = state.enrollment()?.device_id;
    let released = release_all(platform, state.path())?;
    wipe(state)?;
    Ok(LocalOffboard { device_id, released })
}
