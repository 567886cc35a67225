//! The Picket agent: enrolls with a coordinator, then holds one mutual-TLS
//! session to it (Hello, heartbeats, reconnect with jittered backoff) and
//! runs what it is asked to.
//!
//! Layout:
//! - [`actions`]: the executor (journal + platform + session), one file per kind.
//! - [`journal`]: durable per-action records and the result outbox.
//! - [`mail`]: the mail adapter (the local Dovecot through doveadm's HTTP API).
//! - [`offboard`]: releasing, wiping and disabling on offboarding.
//! - [`platform`]: the `Platform` trait and its Linux implementation.
//! - [`config`]: agent TOML config and defaults.
//! - [`state`]: the state dir: key, certificate, CA, enrollment record, status.
//! - [`tls`]: rustls client configs (pinned-CA enrollment, mutual-TLS session).
//! - [`enroll`]: `picket-agent enroll`.
//! - [`content`]: the rule bundle and indicators from the coordinator, compiled once and cached.
//! - [`alerts`]: the durable queue of alert reports (kept until acknowledged).
//! - [`realtime`]: real-time protection (inotify through notify, debounced scans).
//! - [`fsutil`]: durable writes, symlink-safe file operations through directory descriptors, the one file hash.
//! - [`clock`]: the time now.
//! - [`protected`]: files never handed out or moved (agent state, shadow files, private keys).
//! - [`quarantine`]: the encrypted vault (files and persistence records), quarantine and release.
//! - [`scan`]: YARA-X + SHA-256 indicator scanning (engine, walk, targets).
//! - [`upload`]: chunked, resumable uploads over the session (samples).
//! - [`session`]: connect, Hello, heartbeat, reconnect.
//! - [`renew`]: certificate renewal over the session (new key, checked, stored crash-safely).
//! - [`sysinfo`]: host and process facts (the `sysinfo` crate).
//!
//! `main.rs` parses arguments and calls [`enroll::enroll`] or [`session::run`];
//! tests call the same functions.

pub mod actions;
pub mod alerts;
pub mod clock;
pub mod config;
pub mod content;
pub mod enroll;
pub mod fault;
pub mod fsutil;
pub mod journal;
pub mod mail;
pub mod offboard;
pub mod platform;
pub mod protected;
pub mod quarantine;
pub mod realtime;
pub mod renew;
pub mod scan;
pub mod session;
pub mod state;
pub mod sysinfo;
pub mod tls;
pub mod upload;

pub use config::AgentConfig;
