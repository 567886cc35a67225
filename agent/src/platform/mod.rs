//! What actions call to change the device. Each platform implements
//! [`Platform`]; one that cannot do something says so with
//! [`PlatformError::Unsupported`], never a pretend success.
//!
//! - `linux/`: the real implementation.
//! - [`Unsupported`]: a platform that can do nothing (other OSes).

pub mod linux;

pub use linux::priority::lower_current_thread;

use std::time::Duration;

use serde::{Deserialize, Serialize};

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

pub use picket_common::actions::params::{Direction, Exclusion, IsolationMode, Protocol};

/// Everything needed to (re)apply isolation, persisted in the state dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationPolicy {
    pub mode: IsolationMode,
    /// Resolved coordinator endpoints (kept so a restart can re-apply
    /// without DNS, which isolation may block).
    pub coordinator: Vec<std::net::SocketAddr>,
    pub exclusions: Vec<Exclusion>,
    pub allow_dns: bool,
    pub allow_dhcp: bool,
}

pub use picket_common::actions::results::RestrictPolicy;

/// An execution restriction refused.
#[derive(Debug, Clone, Serialize)]
pub struct BlockedExec {
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub size: u64,
    pub pid: i32,
    pub uid: Option<u32>,
}

/// What a platform offers that action kinds need (each kind declares its
/// own in the actions table; the kinds advertised in `Hello` are those
/// whose needs the platform meets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// List and signal processes.
    Processes,
    /// Read, move and write files as root.
    Files,
    /// Cut the device off the network (nftables on Linux).
    Firewall,
    /// Allow or refuse each program execution (fanotify on Linux).
    ExecControl,
    /// Act on the local mail server (the agent's `[mail]` configuration,
    /// not the platform: see [`crate::mail`]).
    Mail,
}

pub trait Platform: Send + Sync + 'static {
    /// What this platform can do.
    fn features(&self) -> Vec<Feature>;

    fn kill_process(&self, req: &KillRequest) -> Result<KillReport, PlatformError>;

    /// Every running process whose executable has this SHA-256 (hex).
    fn processes_running(&self, sha256: &str) -> Result<Vec<i32>, PlatformError>;

    /// Cut the device off the network but for `policy`; replaces any
    /// previous isolation atomically. Returns the rules as applied.
    fn isolate(&self, policy: &IsolationPolicy) -> Result<String, PlatformError>;

    /// Remove Picket's isolation (only Picket's). `false`: there was none.
    fn release_isolation(&self) -> Result<bool, PlatformError>;

    /// SIGKILL every process running the executable file (`dev`, `ino`),
    /// deleted or not; returns the pids.
    fn kill_executable(&self, dev: u64, ino: u64) -> Result<Vec<i32>, PlatformError>;

    /// The installed package that owns `path`, if any.
    fn package_owner(&self, path: &std::path::Path) -> Result<Option<String>, PlatformError>;

    /// Let only allowed executables run (replacing any restriction);
    /// `on_block` hears of each refused exec. Returns what was applied.
    fn restrict_code(
        &self,
        policy: &RestrictPolicy,
        on_block: std::sync::Arc<dyn Fn(BlockedExec) + Send + Sync>,
    ) -> Result<String, PlatformError>;

    /// Lift the restriction. `false`: there was none.
    fn release_code(&self) -> Result<bool, PlatformError>;
}

/// A platform that can do nothing.
pub struct Unsupported;

impl Platform for Unsupported {
    fn features(&self) -> Vec<Feature> {
        Vec::new()
    }

    fn kill_process(&self, _: &KillRequest) -> Result<KillReport, PlatformError> {
        Err(PlatformError::Unsupported("kill_process".into()))
    }

    fn processes_running(&self, _: &str) -> Result<Vec<i32>, PlatformError> {
        Err(PlatformError::Unsupported("process listing".into()))
    }

    fn isolate(&self, _: &IsolationPolicy) -> Result<String, PlatformError> {
        Err(PlatformError::Unsupported("isolate".into()))
    }

    fn release_isolation(&self) -> Result<bool, PlatformError> {
        Err(PlatformError::Unsupported("release_isolation".into()))
    }

    fn kill_executable(&self, _: u64, _: u64) -> Result<Vec<i32>, PlatformError> {
        Err(PlatformError::Unsupported("killing processes".into()))
    }

    fn package_owner(&self, _: &std::path::Path) -> Result<Option<String>, PlatformError> {
        Err(PlatformError::Unsupported("package lookup".into()))
    }

    fn restrict_code(
        &self,
        _: &RestrictPolicy,
        _: std::sync::Arc<dyn Fn(BlockedExec) + Send + Sync>,
    ) -> Result<String, PlatformError> {
        Err(PlatformError::Unsupported("restrict_code".into()))
    }

    fn release_code(&self) -> Result<bool, PlatformError> {
        Err(PlatformError::Unsupported("release_code".into()))
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
