//! Wire messages. One enum per direction: [`AgentMsg`] (agent → coordinator)
//! and [`CoordMsg`] (coordinator → agent).
//!
//! Session shape: an enrolled agent opens mutual TLS, sends `Hello`, and gets
//! `Welcome` or `Refused`; then `Heartbeat` / `HeartbeatAck` until either side
//! closes. An agent without a certificate may send exactly one `Enroll` and
//! gets `Enrolled` or `Refused`. The device id is never taken from a frame:
//! the coordinator reads it from the client certificate.
//!
//! Compatibility rule: add new variants at the end of each enum, never reorder
//! (bincode encodes the variant index).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::actions::{ActionKind, ActionOutcome, ActionRequest, ActionResult, FailureReason};
pub use crate::detection::{AlertReport, ContentState, IndicatorSet, RuleBundle};

/// Frames an agent sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    /// First frame of an authenticated session.
    Hello(Hello),
    /// Liveness; `seq` is echoed back in `HeartbeatAck`.
    Heartbeat { seq: u64 },
    /// Enrollment over server-authenticated TLS: a one-time token and a PKCS#10
    /// certificate signing request for a key made on the device.
    Enroll(EnrollRequest),
    /// The agent began running an action (from now on it cannot be cancelled).
    ActionStarted { action_id: Uuid },
    /// Progress of a running action.
    ActionProgress { action_id: Uuid, phase: String, percent: u8 },
    /// The final result; sent until the coordinator answers `ResultAck`.
    ActionResult(ActionResult),
    /// Detections (real-time protection or a scan); sent until `AlertAck`.
    Alert(AlertReport),
    /// The content this agent holds; sent after `Welcome` and after each
    /// change. The coordinator answers with whatever is newer.
    ContentState(ContentState),
    /// Start or resume the upload that belongs to a running action; the
    /// coordinator answers `UploadAck` with the bytes it already holds.
    UploadBegin(UploadBegin),
    /// Bytes `[offset, offset + data.len())` of an upload.
    UploadChunk(UploadChunk),
    /// Renew this device's certificate: a CSR for a key made on the device
    /// just now. Answered by `CertificateRenewed`. (New in this version: an
    /// older coordinator does not know it; older agents never send it.)
    RenewCertificate { csr_der: Vec<u8> },
    /// This device is a mail host (its agent has a `[mail]` section): sent
    /// after `Welcome`. (New since protocol 1: a mail host needs a
    /// coordinator of this version or later.)
    MailHost(MailHostFacts),
}

/// What a mail host tells about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailHostFacts {
    /// The organisation's mail domains on this host (lowercase; at most
    /// [`crate::actions::mail::MAX_DOMAINS`]): mail from elsewhere is
    /// external.
    pub internal_domains: Vec<String>,
}

/// A mail host's link key ([`crate::links`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkKey {
    /// Base of wrapped links, e.g. `https://click.example.org:8443`.
    pub click_url: String,
    /// [`crate::links::device_key`] of this device.
    pub key: [u8; 32],
}

/// Frames the coordinator sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordMsg {
    /// The session is accepted.
    Welcome(Welcome),
    /// Answer to `Heartbeat { seq }`.
    HeartbeatAck { seq: u64 },
    /// The coordinator refuses the session or request; it closes the
    /// connection after sending this.
    Refused(Refusal),
    /// Enrollment succeeded: the device's certificate and the CA that signed it.
    Enrolled(Enrolled),
    /// Run an action (may be repeated: the agent's journal keys on the id).
    Action(ActionRequest),
    /// Cancel an action the agent has not started yet.
    Cancel { action_id: Uuid },
    /// The result of this action is stored: drop it from the outbox.
    ResultAck { action_id: Uuid },
    /// This alert report is stored: drop it from the agent's queue.
    AlertAck { report_id: Uuid },
    /// The current rule bundle (replaces the agent's).
    Rules(RuleBundle),
    /// The indicators in force (replace the agent's).
    Indicators(IndicatorSet),
    /// How much of an upload the coordinator holds, durably.
    UploadAck(UploadAck),
    /// The renewed certificate, for the key of the `RenewCertificate` CSR;
    /// the one before it stops working once this one is used.
    CertificateRenewed { certificate_der: Vec<u8> },
    /// The key this mail host signs wrapped links with, and the click
    /// listener's address: sent after `MailHost` when the coordinator has a
    /// click listener. (New in this version: only mail hosts of this
    /// version or later send `MailHost`... and get this.)
    LinkKey(LinkKey),
    /// The URL blocks in force on this mail host (replaces the agent's):
    /// `mail_scan` checks the links of the mail it scans against them.
    /// Sent after `MailHost`, and after each change, to agents that list
    /// [`crate::url_blocklist::CAPABILITY`].
    UrlBlocklist(crate::url_blocklist::HostBlocklist),
}

/// An upload: the file an action sends (a sample, an investigation package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadBegin {
    pub action_id: Uuid,
    /// Total size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChunk {
    pub action_id: Uuid,
    pub offset: u64,
    pub data: Vec<u8>,
    /// SHA-256 of `data`, lowercase hex; a chunk that does not match is refused.
    pub sha256: String,
}

/// The coordinator holds `offset` bytes of the upload (fsync'd); the agent
/// continues from there. `done`: the whole file arrived and its SHA-256
/// matched. `error`: the upload is refused for good (too large, no such
/// action, whole-file hash mismatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAck {
    pub action_id: Uuid,
    pub offset: u64,
    pub done: bool,
    pub error: Option<String>,
}

/// The agent introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal the coordinator's [`crate::limits::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    pub agent_version: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    /// Action kinds and features this agent's platform can perform.
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The id the coordinator read from the certificate (for the agent's logs).
    pub device_id: Uuid,
    /// Heartbeat interval the coordinator wants, in seconds.
    pub heartbeat_secs: u32,
    /// Coordinator clock, Unix milliseconds.
    pub server_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub protocol_version: u16,
    pub token: String,
    /// DER-encoded PKCS#10 certificate signing request.
    pub csr_der: Vec<u8>,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub device_id: Uuid,
    /// DER certificate for the device key, SAN `urn:uuid:<device_id>`.
    pub certificate_der: Vec<u8>,
    /// DER of the Picket CA (the agent pinned its fingerprint).
    pub ca_der: Vec<u8>,
    /// Device group the enrollment token assigned.
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// Human-readable detail for logs and CLI output.
    pub message: String,
}

/// Why the coordinator refused. Agents treat some as final (no reconnect
/// until an operator acts): see [`RefusalReason::is_final`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    VersionMismatch,
    Revoked,
    Offboarded,
    UnknownDevice,
    CertificateRequired,
    ProtocolViolation,
    TokenInvalid,
    TokenExpired,
    TokenUsedUp,
    TokenRevoked,
    BadCsr,
    Replaced,
    Internal,
    ShuttingDown,
}

impl RefusalReason {
    /// Whether an agent should stop reconnecting after this refusal.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Revoked | Self::Offboarded | Self::UnknownDevice | Self::VersionMismatch)
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::VersionMismatch => "protocol version mismatch",
            Self::Revoked => "device revoked",
            Self::Offboarded => "device offboarded",
            Self::UnknownDevice => "unknown device",
            Self::CertificateRequired => "client certificate required",
            Self::ProtocolViolation => "protocol violation",
            Self::TokenInvalid => "enrollment token invalid",
            Self::TokenExpired => "enrollment token expired",
            Self::TokenUsedUp => "enrollment token has no uses left",
            Self::TokenRevoked => "enrollment token revoked",
            Self::BadCsr => "certificate signing request rejected",
            Self::Replaced => "session replaced by a newer session of this device",
            Self::Internal => "internal coordinator error",
            Self::ShuttingDown => "coordinator shutting down",
        };
        f.write_str(s)
    }
}
