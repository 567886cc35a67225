//! Remediation action kinds and what travels on the wire about them.
//!
//! Parameters cross the wire as a JSON string (`params_json`); their types
//! are in [`params`], shared by the coordinator (which checks a request
//! before queueing it) and the agent (which checks again before acting).
//! What each kind reports when it succeeds (`output_json`) is typed in
//! [`results`].
//! Kinds are the snake_case names of DESIGN.md.

pub mod mail;
pub mod params;
pub mod results;
#[cfg(feature = "openapi")]
pub mod schema;

use serde::{Deserialize, Serialize};

/// Every kind. New kinds go at the end: on the wire a kind is its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Isolate,
    ReleaseIsolation,
    RestrictCode,
    ReleaseCode,
    Scan,
    StopAndQuarantine,
    ReleaseFromQuarantine,
    CollectPackage,
    RequestSample,
    Offboard,
    KillProcess,
    RemovePersistence,
    DeleteFile,
    /// Read-only: what an investigation needs to know about a file.
    CollectEvidence,
    /// The undo of `remove_persistence`.
    RestorePersistence,
    /// Read-only: messages on a mail host.
    MailSearch,
    /// Messages to a folder the user does not see by default (recoverable).
    SoftDeleteEmail,
    MoveToJunk,
    MoveToInbox,
    /// The undo of the three moves above.
    RestoreEmail,
    /// Messages into the mail host's quarantine account, which no user
    /// reaches.
    QuarantineEmail,
    /// The undo of `quarantine_email`: each message back where it was.
    ReleaseEmail,
    /// Messages expunged for good: not undoable, always approved by a
    /// second person.
    HardDeleteEmail,
    /// Attachments replaced by a note in the user's copy; the original
    /// message to the quarantine account (undo: `release_email`).
    QuarantineAttachment,
    /// Read-only: messages' attachments through the agent's rules and
    /// indicators.
    MailScan,
    /// Read-only: who forwards mail where (users' Sieve redirects).
    MailForwarding,
    /// Users' Sieve scripts without their redirects outside the host's
    /// domains (undo: `restore_forwarding`).
    DisableExternalForwarding,
    /// The undo of `disable_external_forwarding`: the exact scripts back.
    RestoreForwarding,
    /// A URL (exact, domain or prefix) refused at time of click for the
    /// mail host's wrapped links. Run by the coordinator (undo:
    /// `unblock_url`).
    BlockUrl,
    /// The undo of `block_url`.
    UnblockUrl,
}

/// What the rest of Picket needs to know about a kind, declared in its row
/// of [`ActionKind::SPECS`].
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub kind: ActionKind,
    /// The snake_case name of DESIGN.md (the JSON and database spelling).
    pub name: &'static str,
    /// Whether an action of this kind that a crash cut off may simply run
    /// again on restart: only kinds whose effect is idempotent or
    /// read-only. Killing a pid (it may have been reused), moving files,
    /// removing persistence and offboarding are reported `interrupted`
    /// instead, so a person decides.
    pub rerunnable: bool,
    /// How a succeeded action of this kind is undone, if it can be.
    pub undo: Option<Undo>,
}

/// The inverse of a kind: the action that undoes it, with parameters built
/// from the original's typed result.
#[derive(Debug, Clone, Copy)]
pub struct Undo {
    pub kind: ActionKind,
    /// `(id of the action undone, its output JSON)` → the inverse's params.
    pub params: fn(&str, &str) -> Result<String, String>,
}

use ActionKind as K;

const fn spec(kind: ActionKind, name: &'static str, rerunnable: bool, undo: Option<Undo>) -> Spec {
    Spec { kind, name, rerunnable, undo }
}

const fn undo(kind: ActionKind, params: fn(&str, &str) -> Result<String, String>) -> Option<Undo> {
    Some(Undo { kind, params })
}

impl ActionKind {
    /// One row per kind, in declaration order.
    pub const SPECS: [Spec; 30] = [
        spec(K::Isolate, "isolate", true, undo(K::ReleaseIsolation, undo::release)),
        spec(K::ReleaseIsolation, "release_isolation", true, None),
        spec(K::RestrictCode, "restrict_code", true, undo(K::ReleaseCode, undo::release)),
        spec(K::ReleaseCode, "release_code", true, None),
        spec(K::Scan, "scan", true, None),
        spec(K::StopAndQuarantine, "stop_and_quarantine", false, undo(K::ReleaseFromQuarantine, undo::from_vault)),
        spec(K::ReleaseFromQuarantine, "release_from_quarantine", false, None),
        spec(K::CollectPackage, "collect_package", true, None),
        spec(K::RequestSample, "request_sample", true, None),
        spec(K::Offboard, "offboard", false, None),
        spec(K::KillProcess, "kill_process", false, None),
        spec(K::RemovePersistence, "remove_persistence", false, undo(K::RestorePersistence, undo::persistence)),
        spec(K::DeleteFile, "delete_file", false, undo(K::ReleaseFromQuarantine, undo::from_vault)),
        spec(K::CollectEvidence, "collect_evidence", true, None),
        // Putting back is idempotent: a line or file already there is kept.
        spec(K::RestorePersistence, "restore_persistence", true, None),
        spec(K::MailSearch, "mail_search", true, None),
        // A batch writes its plan before it moves anything, and a re-run
        // resumes from the plan: nothing moves twice.
        spec(K::SoftDeleteEmail, "soft_delete_email", true, undo(K::RestoreEmail, undo::mail)),
        spec(K::MoveToJunk, "move_to_junk", true, undo(K::RestoreEmail, undo::mail)),
        spec(K::MoveToInbox, "move_to_inbox", true, undo(K::RestoreEmail, undo::mail)),
        spec(K::RestoreEmail, "restore_email", true, None),
        spec(K::QuarantineEmail, "quarantine_email", true, undo(K::ReleaseEmail, undo::mail)),
        spec(K::ReleaseEmail, "release_email", true, None),
        // Expunging by GUID from the planned folder is idempotent.
        spec(K::HardDeleteEmail, "hard_delete_email", true, None),
        // The user's copy is saved once (found again by its marker header),
        // then the original moves like a quarantine.
        spec(K::QuarantineAttachment, "quarantine_attachment", true, undo(K::ReleaseEmail, undo::mail)),
        spec(K::MailScan, "mail_scan", true, None),
        spec(K::MailForwarding, "mail_forwarding", true, None),
        // The agent records each script before it writes it and resumes
        // from the record: a re-run writes nothing twice.
        spec(
            K::DisableExternalForwarding,
            "disable_external_forwarding",
            true,
            undo(K::RestoreForwarding, undo::forwarding),
        ),
        spec(K::RestoreForwarding, "restore_forwarding", true, None),
        // The coordinator's own: the block's id is the action's, so a
        // re-run finds the block there.
        spec(K::BlockUrl, "block_url", true, undo(K::UnblockUrl, undo::url_block)),
        spec(K::UnblockUrl, "unblock_url", true, None),
    ];

    pub const ALL: [ActionKind; 30] = {
        let mut all = [K::Isolate; 30];
        let mut i = 0;
        while i < all.len() {
            all[i] = Self::SPECS[i].kind;
            i += 1;
        }
        all
    };

    /// This kind's row.
    pub fn spec(self) -> &'static Spec {
        &Self::SPECS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::SPECS.iter().find(|k| k.name == s).map(|k| k.kind)
    }

    /// The kind that undoes this one, if it can be undone.
    pub fn undo(self) -> Option<Self> {
        self.spec().undo.map(|u| u.kind)
    }

    /// See [`Spec::rerunnable`].
    pub fn rerunnable(self) -> bool {
        self.spec().rerunnable
    }

    /// Kinds the coordinator runs itself: never sent to an agent, never in
    /// an agent's capabilities.
    pub fn on_coordinator(self) -> bool {
        matches!(self, Self::BlockUrl | Self::UnblockUrl)
    }
}

/// How each inverse's parameters come from what the original did.
mod undo {
    use super::{mail, params, results};

    fn json<T: serde::Serialize>(p: &T) -> Result<String, String> {
        serde_json::to_string(p).map_err(|e| e.to_string())
    }

    /// `release_isolation`, `release_code`: nothing but the link.
    pub fn release(undo_of: &str, _output: &str) -> Result<String, String> {
        json(&params::Release { undo_of: Some(undo_of.to_string()) })
    }

    /// `release_from_quarantine` of what went into the vault.
    pub fn from_vault(undo_of: &str, output: &str) -> Result<String, String> {
        let done: results::QuarantineOutput =
            serde_json::from_str(output).map_err(|e| format!("the quarantine's result is unreadable: {e}"))?;
        json(&params::ReleaseFromQuarantine { quarantine_id: done.quarantine_id, undo_of: Some(undo_of.to_string()) })
    }

    /// `restore_persistence` of what the agent kept of the removal.
    pub fn persistence(undo_of: &str, output: &str) -> Result<String, String> {
        let done: results::PersistenceOutput =
            serde_json::from_str(output).map_err(|e| format!("the removal's result is unreadable: {e}"))?;
        let record = done.record_id.ok_or(
            "this removal was made by an agent that kept no record of it (Picket 0.1); \
             the removed entries are listed in its result",
        )?;
        json(&params::RestorePersistence { record_id: record, undo_of: Some(undo_of.to_string()) })
    }

    /// `restore_email` (`release_email`) of the batch the agent recorded.
    pub fn mail(undo_of: &str, output: &str) -> Result<String, String> {
        let done: mail::MailBatchOutput =
            serde_json::from_str(output).map_err(|e| format!("the batch's result is unreadable: {e}"))?;
        json(&mail::RestoreEmail { record_id: done.record_id, undo_of: Some(undo_of.to_string()) })
    }

    /// `unblock_url` of the block made.
    pub fn url_block(undo_of: &str, output: &str) -> Result<String, String> {
        let done: mail::BlockUrlOutput =
            serde_json::from_str(output).map_err(|e| format!("the block's result is unreadable: {e}"))?;
        json(&mail::UnblockUrl { block_id: done.block_id, undo_of: Some(undo_of.to_string()) })
    }

    /// `restore_forwarding`: the agent's record of the change.
    pub fn forwarding(undo_of: &str, output: &str) -> Result<String, String> {
        let done: mail::ForwardingChangeOutput =
            serde_json::from_str(output).map_err(|e| format!("the change's result is unreadable: {e}"))?;
        json(&mail::RestoreEmail { record_id: done.record_id, undo_of: Some(undo_of.to_string()) })
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The coordinator asks the agent to run an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action_id: uuid::Uuid,
    pub kind: ActionKind,
    pub params_json: String,
}

/// How an action ended on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionOutcome {
    /// Structured output (JSON).
    Succeeded {
        output_json: String,
    },
    Failed {
        reason: FailureReason,
        error: String,
    },
    /// Cancelled on the device before it started.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The action ran and failed.
    Error,
    /// The agent stopped (crash, power loss) while it ran; not re-run.
    Interrupted,
    /// This platform or build cannot do this kind.
    Unsupported,
    /// The parameters do not describe a valid action.
    InvalidParams,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Interrupted => "interrupted",
            Self::Unsupported => "unsupported",
            Self::InvalidParams => "invalid_params",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub action_id: uuid::Uuid,
    pub outcome: ActionOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip_and_undo_pairs_are_the_designed_ones() {
        for k in ActionKind::ALL {
            assert_eq!(ActionKind::parse(k.as_str()), Some(k));
        }
        for (i, spec) in ActionKind::SPECS.iter().enumerate() {
            assert_eq!(spec.kind as usize, i, "{} is not in declaration order", spec.name);
        }
        let undoable: Vec<_> = ActionKind::ALL.into_iter().filter(|k| k.undo().is_some()).collect();
        assert_eq!(
            undoable,
            vec![
                ActionKind::Isolate,
                ActionKind::RestrictCode,
                ActionKind::StopAndQuarantine,
                ActionKind::RemovePersistence,
                ActionKind::DeleteFile,
                ActionKind::SoftDeleteEmail,
                ActionKind::MoveToJunk,
                ActionKind::MoveToInbox,
                ActionKind::QuarantineEmail,
                ActionKind::QuarantineAttachment,
                ActionKind::DisableExternalForwarding,
                ActionKind::BlockUrl,
            ]
        );
        assert!(!ActionKind::KillProcess.rerunnable());
    }

    #[test]
    fn every_undo_builds_parameters_its_inverse_accepts() {
        let id = "6b1a6f9e-4a7c-4a44-9a38-000000000001";
        let outputs = [
            (ActionKind::Isolate, r#"{"mode":"full"}"#),
            (ActionKind::RestrictCode, "{}"),
            (ActionKind::StopAndQuarantine, r#"{"quarantine_id":"6b1a6f9e-4a7c-4a44-9a38-000000000007"}"#),
            (ActionKind::DeleteFile, r#"{"quarantine_id":["6b1a6f9e-4a7c-4a44-9a38-000000000007"]}"#),
            (
                ActionKind::RemovePersistence,
                r#"{"path":"/x","removed":[],"removals":[],"record_id":"6b1a6f9e-4a7c-4a44-9a38-000000000009"}"#,
            ),
            (
                ActionKind::SoftDeleteEmail,
                r#"{"record_id":"6b1a6f9e-4a7c-4a44-9a38-00000000000a","counts":{},"items":[]}"#,
            ),
            (
                ActionKind::DisableExternalForwarding,
                r#"{"record_id":"6b1a6f9e-4a7c-4a44-9a38-00000000000b","scripts":[]}"#,
            ),
        ];
        for (kind, output) in outputs {
            let undo = kind.spec().undo.expect("undoable");
            let p = (undo.params)(id, output).expect("params");
            assert_eq!(params::check(undo.kind, &p), Ok(()), "{kind}: {p}");
            assert!(p.contains(id), "{kind}: the inverse names what it undoes");
        }
        let old = r#"{"path":"/x","removed":["line"],"removals":[]}"#;
        let refused = (ActionKind::RemovePersistence.spec().undo.expect("undoable").params)(id, old);
        assert!(refused.expect_err("no record").contains("kept no record"));
        let garbage = (ActionKind::StopAndQuarantine.spec().undo.expect("undoable").params)(id, "{}");
        assert!(garbage.expect_err("unreadable").contains("unreadable"));
    }
}
