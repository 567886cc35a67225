//! The parameters of each action kind: what the coordinator sends (as JSON
//! in `params_json`) and the agent reads, one type per kind, shared so both
//! ends agree. Unknown fields are refused: a misspelt field must never fall
//! back silently to a default on an agent that runs as root.
//!
//! [`check`] parses a kind's parameters and checks what can be checked
//! without the device (ranges, hash formats, absolute paths); the
//! coordinator refuses a bad request with it before anything is queued, and
//! the agent runs the same check before acting.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "openapi")]
use super::schema::{AbsolutePath, Sha256Hex};
use super::ActionKind;
use crate::detection::is_sha256_hex;

/// `kill_process`: one process, or every process running an executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KillProcess {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub pid: Option<i32>,
    /// Executable SHA-256 the process must have (protects against pid reuse),
    /// or alone: every process running it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Sha256Hex>, inline))]
    pub sha256: Option<String>,
    /// Seconds between SIGTERM and SIGKILL (0: SIGKILL at once; at most 300).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 300))]
    pub grace_secs: u64,
}

/// How the device is cut off the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IsolationMode {
    /// Only the coordinator stays reachable.
    Full,
    /// The coordinator, the exclusions, and optionally DNS and DHCP.
    Selective,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The device may open connections to the remote.
    Outbound,
    /// The remote may open connections to the device.
    Inbound,
    Both,
}

/// Traffic a selective isolation still lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Remote network, e.g. `10.20.0.0/16` or `2001:db8::/48`.
    pub cidr: String,
    #[serde(default = "any_protocol")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub protocol: Protocol,
    /// Remote port (outbound) or local port (inbound); needs tcp or udp.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 65535))]
    pub port: Option<u16>,
    #[serde(default = "both_directions")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub direction: Direction,
}

fn any_protocol() -> Protocol {
    Protocol::Any
}

fn both_directions() -> Direction {
    Direction::Both
}

/// `isolate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Isolate {
    #[serde(default = "full")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub mode: IsolationMode,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub exclusions: Vec<Exclusion>,
    #[serde(default)]
    pub allow_dns: bool,
    #[serde(default)]
    pub allow_dhcp: bool,
}

fn full() -> IsolationMode {
    IsolationMode::Full
}

/// `release_isolation`, `release_code`: nothing but the action they undo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Set when this release undoes an action.
    #[serde(default)]
    pub undo_of: Option<String>,
}

/// `collect_package`, `offboard`: no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScanMode {
    Quick,
    Full,
    Paths,
}

/// `scan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scan {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub mode: Option<ScanMode>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<AbsolutePath>, inline))]
    pub paths: Vec<PathBuf>,
    /// Share of the cores to use, in percent (default 50).
    #[serde(default = "half")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub cpu_percent: u8,
    /// Skip files larger than this many bytes (default 256 MiB).
    #[serde(default)]
    pub max_file_size: Option<u64>,
}

fn half() -> u8 {
    50
}

/// `request_sample`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestSample {
    #[cfg_attr(feature = "openapi", schema(value_type = AbsolutePath, inline))]
    pub path: PathBuf,
}

/// `collect_evidence` (investigations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectEvidence {
    #[cfg_attr(feature = "openapi", schema(value_type = AbsolutePath, inline))]
    pub path: PathBuf,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Sha256Hex>, inline))]
    pub sha256: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub search_paths: Vec<PathBuf>,
    /// The coordinator's temp folders, for the heuristics.
    #[serde(default)]
    pub temp_folders: Vec<String>,
    /// Search for other copies.
    #[serde(default = "yes")]
    pub copies: bool,
    /// The file's size, when known (only files of that size are read).
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub budget_secs: Option<u64>,
    #[serde(default)]
    pub budget_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

/// `stop_and_quarantine` (`sha256` or `path`) and `delete_file` (`path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AbsolutePath>, inline))]
    pub path: Option<PathBuf>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Sha256Hex>, inline))]
    pub sha256: Option<String>,
    /// Where to look for copies by SHA-256 (default: the quick-scan places).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<AbsolutePath>, inline))]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub force: bool,
    /// With `path`: only quarantine the file if it has this SHA-256 (the
    /// coordinator's investigations always send it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Sha256Hex>, inline))]
    pub expected_sha256: Option<String>,
}

/// One quarantine id, or several (the undo of a quarantine of copies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum QuarantineIds {
    One(Uuid),
    Many(Vec<Uuid>),
}

impl QuarantineIds {
    pub fn ids(&self) -> Vec<Uuid> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// `release_from_quarantine`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseFromQuarantine {
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub quarantine_id: QuarantineIds,
    /// Set by the coordinator's undo.
    #[serde(default)]
    pub undo_of: Option<String>,
}

/// `remove_persistence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemovePersistence {
    #[cfg_attr(feature = "openapi", schema(value_type = AbsolutePath, inline))]
    pub path: PathBuf,
}

/// `restore_persistence`: put back what a `remove_persistence` on this
/// device removed. Only the agent's own record of that removal is named —
/// what goes back comes from the device, never from these parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestorePersistence {
    pub record_id: Uuid,
    /// Set by the coordinator's undo.
    #[serde(default)]
    pub undo_of: Option<String>,
}

/// `restrict_code`: what may run besides unchanged packaged executables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestrictCode {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Sha256Hex>, inline))]
    pub allow_sha256: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<AbsolutePath>, inline))]
    pub allow_paths: Vec<PathBuf>,
}

/// Parse `json` as `T`, saying which kind's parameters are wrong.
pub fn parse<T: serde::de::DeserializeOwned>(kind: ActionKind, json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("{kind} params: {e}"))
}

fn sha256_ok(what: &str, h: &str) -> Result<(), String> {
    if is_sha256_hex(&h.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!("{what} must be 64 hex digits"))
    }
}

fn absolute(what: &str, p: &std::path::Path) -> Result<(), String> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(format!("{what} must be an absolute path"))
    }
}

/// Parse the parameters of `kind` and check what needs no device.
pub fn check(kind: ActionKind, json: &str) -> Result<(), String> {
    match kind {
        ActionKind::KillProcess => {
            let p: KillProcess = parse(kind, json)?;
            if p.grace_secs > 300 {
                return Err("grace_secs must be at most 300".into());
            }
            if p.pid.is_none() && p.sha256.is_none() {
                return Err("give pid or sha256".into());
            }
            if p.pid.is_some_and(|pid| pid <= 0) {
                return Err("pid must be positive".into());
            }
            p.sha256.as_deref().map_or(Ok(()), |h| sha256_ok("sha256", h))
        }
        ActionKind::Isolate => {
            let p: Isolate = parse(kind, json)?;
            if p.mode == IsolationMode::Full && (!p.exclusions.is_empty() || p.allow_dns || p.allow_dhcp) {
                return Err("exclusions, allow_dns and allow_dhcp need mode \"selective\"".into());
            }
            Ok(())
        }
        ActionKind::ReleaseIsolation | ActionKind::ReleaseCode => parse::<Release>(kind, json).map(|_| ()),
        ActionKind::CollectPackage | ActionKind::Offboard => parse::<Nothing>(kind, json).map(|_| ()),
        ActionKind::Scan => {
            let p: Scan = parse(kind, json)?;
            if !(1..=100).contains(&p.cpu_percent) {
                return Err("cpu_percent must be 1..=100".into());
            }
            p.paths.iter().try_for_each(|path| absolute("every path", path))
        }
        ActionKind::RequestSample => absolute("path", &parse::<RequestSample>(kind, json)?.path),
        ActionKind::CollectEvidence => {
            let p: CollectEvidence = parse(kind, json)?;
            absolute("path", &p.path)?;
            p.sha256.as_deref().map_or(Ok(()), |h| sha256_ok("sha256", h))
        }
        ActionKind::StopAndQuarantine | ActionKind::DeleteFile => {
            let p: Quarantine = parse(kind, json)?;
            match (&p.path, &p.sha256) {
                (Some(path), None) => absolute("path", path)?,
                (None, Some(h)) if kind == ActionKind::StopAndQuarantine => sha256_ok("sha256", h)?,
                _ if kind == ActionKind::DeleteFile => return Err("give path".into()),
                _ => return Err("give path or sha256, not both".into()),
            }
            p.paths.iter().try_for_each(|path| absolute("every search path", path))?;
            p.expected_sha256.as_deref().map_or(Ok(()), |h| sha256_ok("expected_sha256", h))
        }
        ActionKind::ReleaseFromQuarantine => {
            let p: ReleaseFromQuarantine = parse(kind, json)?;
            if p.quarantine_id.ids().is_empty() {
                return Err("quarantine_id: a UUID or a list of UUIDs".into());
            }
            Ok(())
        }
        ActionKind::RemovePersistence => absolute("path", &parse::<RemovePersistence>(kind, json)?.path),
        ActionKind::RestorePersistence => parse::<RestorePersistence>(kind, json).map(|_| ()),
        ActionKind::MailSearch => super::mail::check_search(&parse(kind, json)?),
        ActionKind::SoftDeleteEmail
        | ActionKind::MoveToJunk
        | ActionKind::MoveToInbox
        | ActionKind::QuarantineEmail
        | ActionKind::HardDeleteEmail
        | ActionKind::MailScan => super::mail::check_messages(&parse(kind, json)?),
        ActionKind::QuarantineAttachment => super::mail::check_attachments(&parse(kind, json)?),
        ActionKind::RestoreEmail | ActionKind::ReleaseEmail | ActionKind::RestoreForwarding => {
            parse::<super::mail::RestoreEmail>(kind, json).map(|_| ())
        }
        ActionKind::MailForwarding | ActionKind::DisableExternalForwarding => {
            super::mail::check_users(&parse(kind, json)?)
        }
        ActionKind::BlockUrl => super::mail::check_block_url(&parse(kind, json)?),
        ActionKind::UnblockUrl => parse::<super::mail::UnblockUrl>(kind, json).map(|_| ()),
        ActionKind::RestrictCode => {
            let p: RestrictCode = parse(kind, json)?;
            p.allow_sha256.iter().try_for_each(|h| sha256_ok("every allow_sha256", h))?;
            p.allow_paths.iter().try_for_each(|path| absolute("every allow_paths entry", path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_takes_its_own_parameters_and_nothing_else() {
        let ok = [
            (ActionKind::KillProcess, r#"{"pid":42,"grace_secs":5}"#),
            (
                ActionKind::Isolate,
                r#"{"mode":"selective","exclusions":[{"cidr":"10.0.0.0/8","port":443,"protocol":"tcp"}]}"#,
            ),
            (ActionKind::ReleaseIsolation, r#"{"undo_of":"x"}"#),
            (ActionKind::CollectPackage, "{}"),
            (ActionKind::Scan, r#"{"mode":"quick"}"#),
            (ActionKind::RequestSample, r#"{"path":"/tmp/x"}"#),
            (
                ActionKind::StopAndQuarantine,
                r#"{"sha256":"ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"}"#,
            ),
            (ActionKind::ReleaseFromQuarantine, r#"{"quarantine_id":["6b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a"]}"#),
            (ActionKind::RestrictCode, r#"{"allow_paths":["/opt/app"]}"#),
            (ActionKind::BlockUrl, r#"{"value":"https://evil.example/login"}"#),
            (ActionKind::BlockUrl, r#"{"value":"phish.example","match_type":"domain","expires_at":1}"#),
            (ActionKind::BlockUrl, r#"{"value":"HTTP://cdn.example/p/","match_type":"prefix"}"#),
            (ActionKind::UnblockUrl, r#"{"block_id":"6b1a6f9e-4a7c-4a44-9a38-1f3e0d3b1c2a"}"#),
        ];
        for (kind, json) in ok {
            assert_eq!(check(kind, json), Ok(()), "{kind} {json}");
        }
        let bad = [
            (ActionKind::KillProcess, r#"{"pid":42,"grace":5}"#, "unknown field"),
            (ActionKind::KillProcess, r#"{"grace_secs":5}"#, "give pid or sha256"),
            (ActionKind::Isolate, r#"{"allow_dns":true}"#, "selective"),
            (ActionKind::CollectPackage, r#"{"x":1}"#, "unknown field"),
            (ActionKind::RequestSample, r#"{"path":"relative"}"#, "absolute"),
            (ActionKind::DeleteFile, r#"{"sha256":"ab"}"#, "give path"),
            (ActionKind::StopAndQuarantine, r#"{"path":"/x","expected_sha256":"nope"}"#, "64 hex"),
            (ActionKind::ReleaseFromQuarantine, r#"{"quarantine_id":"not-a-uuid"}"#, "params"),
            (ActionKind::Scan, r#"{"cpu_percent":0}"#, "cpu_percent"),
            (ActionKind::BlockUrl, r#"{"value":"javascript:alert(1)","match_type":"prefix"}"#, "http"),
            (ActionKind::BlockUrl, r#"{"value":"https://a b"}"#, "http"),
            (ActionKind::BlockUrl, r#"{"value":"Phish.Example","match_type":"domain"}"#, "lower case"),
            (ActionKind::BlockUrl, r#"{"value":"https://evil.example/","match_type":"domain"}"#, "domain name"),
            (ActionKind::BlockUrl, r#"{"value":"x.example","match_type":"domain","expires_at":0}"#, "expires_at"),
        ];
        for (kind, json, why) in bad {
            let err = check(kind, json).expect_err(json);
            assert!(err.contains(why), "{kind} {json}: {err}");
        }
    }
}
