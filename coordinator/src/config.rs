//! Coordinator configuration: a TOML file (unknown keys rejected) with
//! command-line overrides. Every key is documented in
//! `packaging/coordinator.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::actions::ActionPolicy;
use crate::gateway::GatewayConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub agent_listen: SocketAddr,
    pub api_listen: SocketAddr,
    /// Empty: SQLite file `coordinator.db` in the data dir.
    pub database_url: String,
    /// `HOST:PORT` agents dial; empty: derived from `agent_listen`.
    pub advertise_agent_address: String,
    pub heartbeat_secs: u64,
    pub handshake_timeout_secs: u64,
    pub max_connections: usize,
    pub max_frame_bytes: u32,
    /// Detections one device may report a minute; more are counted, not stored.
    pub max_alerts_per_minute: u32,
    /// Unauthenticated connections one source address may hold open.
    pub max_unauthenticated_per_ip: usize,
    /// Frames one session may send a second (twice that at once).
    pub max_frames_per_sec: u32,
    /// Seconds a device may take to accept a frame before it is cut off.
    pub write_timeout_secs: u64,
    /// Seconds an API client has to send each request head (also the
    /// keep-alive idle limit).
    pub api_header_timeout_secs: u64,
    /// API connections open at once.
    pub api_max_connections: usize,
    /// How operators reach the API and console (`[api_tls]`): HTTPS unless
    /// `insecure_http` on a loopback address.
    pub api_tls: ApiTlsConfig,
    /// Console sign-in sessions (`[console]`).
    pub console: ConsoleConfig,
    /// Days an offboarded device's history is kept before it is purged.
    pub offboard_retention_days: u64,
    /// Lifetime of device certificates in seconds; agents renew at two thirds.
    pub device_cert_lifetime_secs: u64,
    /// Largest file `request_sample` may upload, in bytes.
    pub max_sample_bytes: u64,
    /// Approval policy and expiries (`[actions]`).
    pub actions: ActionPolicy,
    /// Event sinks (`[events]`).
    pub events: EventsConfig,
    /// Rule uploads (`[rules]`).
    pub rules: RulesConfig,
    /// Folder classes for automated investigations (`[investigations]`).
    pub investigations: crate::investigations::InvestigationConfig,
    /// Time-of-click protection (`[click]`): the click listener that
    /// wrapped links lead to.
    pub click: ClickConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickConfig {
    /// Address of the click listener (HTTPS with the API's certificate;
    /// plain HTTP, on loopback only, when the API's is),
    /// e.g. `0.0.0.0:7444`. Unset: no listener, and mail hosts do not
    /// wrap links.
    pub listen: Option<SocketAddr>,
    /// Base of wrapped links as users' browsers reach the listener, e.g.
    /// `https://click.example.org:7444`. Empty: `https://` and the listen
    /// address.
    pub url: String,
    /// Clicks one client address may make a minute; past it, a "too many"
    /// page (nothing is redirected or logged).
    pub max_clicks_per_minute: u32,
}

impl Default for ClickConfig {
    fn default() -> Self {
        Self { listen: None, url: String::new(), max_clicks_per_minute: 600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// The `picket-agent` binary that compiles uploaded rules (empty: the one
    /// beside this executable, else `picket-agent` on PATH).
    pub checker: PathBuf,
    /// Largest bundle accepted, in bytes of rule source; it travels to agents
    /// in one frame, so it must stay below `max_frame_bytes`.
    pub max_bundle_bytes: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self { checker: PathBuf::new(), max_bundle_bytes: 6 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTlsConfig {
    /// PEM certificate chain to serve (with `key`; reloaded on SIGHUP).
    /// Empty: a certificate the coordinator's own CA issues at start for
    /// `hostnames`.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// Names (DNS or IP) of the self-issued certificate. Empty: this host's
    /// name, localhost, 127.0.0.1, ::1 and the listen address.
    pub hostnames: Vec<String>,
    /// Serve plain HTTP instead: only on a loopback address.
    pub insecure_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A session without a request for this long ends (seconds).
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in, active or not (seconds).
    pub absolute_timeout_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { idle_timeout_secs: 30 * 60, absolute_timeout_secs: 12 * 3600 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// URLs that receive each action transition as an HTTP POST of JSON.
    pub webhooks: Vec<String>,
    /// Syslog receivers (RFC 5424).
    pub syslog: Vec<SyslogTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTarget {
    /// HOST:PORT
    pub address: String,
    /// "udp" or "tcp"
    pub transport: crate::events::syslog::Transport,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/picket-coordinator"),
            agent_listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 7080)),
            database_url: String::new(),
            advertise_agent_address: String::new(),
            heartbeat_secs: 30,
            handshake_timeout_secs: 10,
            max_connections: 15_000,
            max_frame_bytes: picket_common::limits::DEFAULT_MAX_FRAME,
            max_alerts_per_minute: 600,
            max_unauthenticated_per_ip: 256,
            max_frames_per_sec: 200,
            write_timeout_secs: 30,
            api_header_timeout_secs: 30,
            api_max_connections: 1024,
            api_tls: ApiTlsConfig::default(),
            console: ConsoleConfig::default(),
            offboard_retention_days: 180,
            device_cert_lifetime_secs: 90 * 86_400,
            max_sample_bytes: 512 * 1024 * 1024,
            actions: ActionPolicy::default(),
            events: EventsConfig::default(),
            rules: RulesConfig::default(),
            investigations: crate::investigations::InvestigationConfig::default(),
            click: ClickConfig::default(),
        }
    }
}

/// This machine's host name, if it has one.
fn host_name() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host = host.trim();
    (!host.is_empty()).then(|| host.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(5..=3600).contains(&self.heartbeat_secs) {
            return bad("heartbeat_secs must be 5..=3600");
        }
        if !(1..=120).contains(&self.handshake_timeout_secs) {
            return bad("handshake_timeout_secs must be 1..=120");
        }
        if self.click.max_clicks_per_minute == 0 {
            return bad("click.max_clicks_per_minute must be at least 1");
        }
        if !self.click.url.is_empty()
            && !self.click.url.starts_with("https://")
            && !self.click.url.starts_with("http://")
        {
            return bad("click.url must start with https:// (or http://)");
        }
        if self.api_tls.insecure_http && self.click.listen.is_some_and(|a| !a.ip().is_loopback()) {
            return bad(
                "the click listener serves plain HTTP like the API (insecure_http): only on a loopback address",
            );
        }
        if self.max_sample_bytes == 0 {
            return bad("max_sample_bytes must be at least 1");
        }
        if self.max_alerts_per_minute == 0 {
            return bad("max_alerts_per_minute must be at least 1");
        }
        if self.max_unauthenticated_per_ip == 0 || self.max_frames_per_sec == 0 {
            return bad("max_unauthenticated_per_ip and max_frames_per_sec must be at least 1");
        }
        if !(60..=5 * 365 * 86_400).contains(&self.device_cert_lifetime_secs) {
            return bad("device_cert_lifetime_secs must be between 60 and 157680000 (5 years)");
        }
        if !(1..=3600).contains(&self.write_timeout_secs) {
            return bad("write_timeout_secs must be 1..=3600");
        }
        if !(1..=3600).contains(&self.api_header_timeout_secs) || self.api_max_connections == 0 {
            return bad("api_header_timeout_secs must be 1..=3600 and api_max_connections at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        let tls = &self.api_tls;
        if tls.insecure_http && !self.api_listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "--api-insecure-http serves plain HTTP, which is allowed only on a loopback address; {} is not \
                 one (serve HTTPS there, or listen on 127.0.0.1)",
                self.api_listen
            )));
        }
        if tls.cert.as_os_str().is_empty() != tls.key.as_os_str().is_empty() {
            return bad("--api-cert and --api-key go together");
        }
        if tls.hostnames.iter().any(|h| h.is_empty() || h == picket_common::limits::COORDINATOR_SERVER_NAME) {
            return bad("--api-hostname: a DNS name or IP address, not empty and not the agents' server name");
        }
        if !(64 * 1024..=picket_common::limits::MAX_FRAME_CEILING).contains(&self.max_frame_bytes) {
            return bad("max_frame_bytes must be between 65536 and 67108864");
        }
        let console = &self.console;
        if console.idle_timeout_secs == 0 || console.absolute_timeout_secs < console.idle_timeout_secs {
            return bad("[console] idle_timeout_secs must be at least 1 and absolute_timeout_secs at least that");
        }
        self.actions.validate().map_err(ConfigError::Invalid)?;
        // Room for the frame's own overhead (names, lengths, version).
        if self.rules.max_bundle_bytes == 0 || self.rules.max_bundle_bytes + 64 * 1024 > self.max_frame_bytes as usize {
            return bad("rules.max_bundle_bytes must be at least 1 and 64 KiB below max_frame_bytes");
        }
        for url in &self.events.webhooks {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return bad("events.webhooks: each must be an http:// or https:// URL");
            }
        }
        if !self.database_url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"].iter().any(|p| self.database_url.starts_with(p))
        {
            return bad("database_url must start with sqlite: or postgres:");
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("coordinator.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The address to print in enroll commands for agents to dial.
    pub fn advertise(&self, bound: SocketAddr) -> String {
        if !self.advertise_agent_address.is_empty() {
            return self.advertise_agent_address.clone();
        }
        if bound.ip().is_unspecified() {
            return format!("{}:{}", host_name().unwrap_or_else(|| "localhost".into()), bound.port());
        }
        bound.to_string()
    }

    /// The names of the self-issued API certificate.
    pub fn api_hostnames(&self) -> Vec<String> {
        if !self.api_tls.hostnames.is_empty() {
            return self.api_tls.hostnames.clone();
        }
        let mut names = Vec::new();
        // Only a name a certificate can carry; anything else is left out
        // rather than keep the coordinator from starting.
        if let Some(host) = host_name().filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
        {
            names.push(host);
        }
        names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        let ip = self.api_listen.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
        names
    }

    /// The base of wrapped links, when there is a click listener.
    pub fn click_url(&self, bound: SocketAddr) -> String {
        if self.click.url.is_empty() {
            let scheme = if self.api_tls.insecure_http { "http" } else { "https" };
            format!("{scheme}://{bound}")
        } else {
            self.click.url.trim_end_matches('/').to_string()
        }
    }

    pub fn http_limits(&self) -> crate::api::server::HttpLimits {
        crate::api::server::HttpLimits {
            header_timeout: Duration::from_secs(self.api_header_timeout_secs),
            max_connections: self.api_max_connections,
        }
    }

    pub fn gateway(&self) -> GatewayConfig {
        GatewayConfig {
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            max_connections: self.max_connections,
            max_frame: self.max_frame_bytes,
            max_alerts_per_minute: self.max_alerts_per_minute,
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip,
            max_frames_per_sec: self.max_frames_per_sec,
            write_timeout: Duration::from_secs(self.write_timeout_secs),
            device_cert_lifetime: time::Duration::seconds(
                i64::try_from(self.device_cert_lifetime_secs).unwrap_or(90 * 86_400),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("data_dir = \"/x\"\nagent_lisen = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.to_string().contains("agent_lisen"), "{err}");
    }

    #[test]
    fn shipped_default_config_parses_and_validates() {
        let text = include_str!("../../packaging/coordinator.toml");
        let config: Config = toml::from_str(text).expect("packaging/coordinator.toml");
        config.validate().expect("valid");
    }
}
