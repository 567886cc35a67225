//! Agent configuration (TOML, unknown keys rejected). Every key is documented
//! in `packaging/agent.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    /// Seconds between heartbeats; the coordinator may ask for a shorter one.
    pub heartbeat_secs: u64,
    /// Override the `HOST:PORT` recorded at enrollment (empty: use that).
    pub coordinator: String,
    /// Largest frame accepted from the coordinator, in bytes.
    pub max_frame_bytes: u32,
    /// YARA rule files or directories loaded besides the coordinator's bundle.
    pub rule_dirs: Vec<PathBuf>,
    /// Real-time protection (`[realtime]`).
    pub realtime: crate::realtime::RealtimeConfig,
    /// Root under which quarantine looks for persistence (cron, systemd, …).
    pub persistence_root: PathBuf,
    /// Mount points restrict_code watches; empty: every local file system.
    pub restrict_scope: Vec<PathBuf>,
    /// Where investigations look for other copies of a file on this device
    /// (empty: what the coordinator asks, else the quick-scan places).
    pub evidence_search_paths: Vec<PathBuf>,
    /// `[mail]`: this device is a mail host (its Dovecot).
    pub mail: Option<crate::mail::MailConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            heartbeat_secs: picket_common::limits::DEFAULT_HEARTBEAT.as_secs(),
            coordinator: String::new(),
            max_frame_bytes: picket_common::limits::DEFAULT_MAX_FRAME,
            rule_dirs: vec![PathBuf::from("/etc/picket/rules")],
            realtime: crate::realtime::RealtimeConfig::default(),
            persistence_root: PathBuf::from("/"),
            restrict_scope: Vec::new(),
            evidence_search_paths: Vec::new(),
            mail: None,
        }
    }
}

pub const DEFAULT_STATE_DIR: &str = "/var/lib/picket-agent";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl AgentConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.heartbeat_secs) {
            return Err(ConfigError::Invalid("heartbeat_secs must be 1..=3600".into()));
        }
        if !(64 * 1024..=picket_common::limits::MAX_FRAME_CEILING).contains(&self.max_frame_bytes) {
            return Err(ConfigError::Invalid("max_frame_bytes must be between 65536 and 67108864".into()));
        }
        Ok(())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_parses_and_validates() {
        let config: AgentConfig = toml::from_str(include_str!("../../packaging/agent.toml")).expect("agent.toml");
        config.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<AgentConfig>("heartbeat = 3\n").is_err());
    }
}
