//! What actions call to change the device. Each platform implements
//! [`Platform`]; one that cannot do something says so with
//! [`PlatformError::Unsupported`], never a pretend success.
//!
//! - `linux/`: the real implementation.
//! - [`Unsupported`]: a platform that can do nothing (other OSes).

pub mod linux;

use std::time::Duration;

use picket_common::actions::ActionKind;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("not supported on this platform: {0}")]
    Unsupported(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Terminate a process.
#[derive(Debug, Clone)]
pub struct KillRequest {
    pub pid: i32,
    /// When set, the process's executable must have this SHA-256 (hex), so a
    /// reused pid is never killed by mistake.
    pub sha256: Option<String>,
    /// Send SIGTERM and wait this long before SIGKILL; zero kills at once.
    pub grace: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct KillReport {
    pub pid: i32,
    pub executable: String,
    pub executable_sha256: Option<String>,
    pub signals: Vec<&'static str>,
    /// Whether the process was gone when the action ended.
    pub exited: bool,
}

pub trait Platform: Send + Sync + 'static {
    /// Action kinds this platform can perform (reported in `Hello`).
    fn capabilities(&self) -> Vec<ActionKind>;

    fn kill_process(&self, req: &KillRequest) -> Result<KillReport, PlatformError>;
}

/// A platform that can do nothing.
pub struct Unsupported;

impl Platform for Unsupported {
    fn capabilities(&self) -> Vec<ActionKind> {
        Vec::new()
    }

    fn kill_process(&self, _: &KillRequest) -> Result<KillReport, PlatformError> {
        Err(PlatformError::Unsupported("kill_process".into()))
    }
}

/// The platform of the running OS.
pub fn native() -> std::sync::Arc<dyn Platform> {
    if cfg!(target_os = "linux") {
        std::sync::Arc::new(linux::Linux)
    } else {
        std::sync::Arc::new(Unsupported)
    }
}
