//! Remediation action kinds and what travels on the wire about them.
//!
//! Parameters cross the wire as a JSON string (`params_json`); their types
//! are in [`params`], shared by the coordinator (which checks a request
//! before queueing it) and the agent (which checks again before acting).
//! What each kind reports when it succeeds (`output_json`) is typed in
//! [`results`].
//! Kinds are the snake_case names of DESIGN.md.

pub mod params;
pub mod results;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl ActionKind {
    pub const ALL: [ActionKind; 14] = [
        Self::Isolate,
        Self::ReleaseIsolation,
        Self::RestrictCode,
        Self::ReleaseCode,
        Self::Scan,
        Self::StopAndQuarantine,
        Self::ReleaseFromQuarantine,
        Self::CollectPackage,
        Self::RequestSample,
        Self::Offboard,
        Self::KillProcess,
        Self::RemovePersistence,
        Self::DeleteFile,
        Self::CollectEvidence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::ReleaseIsolation => "release_isolation",
            Self::RestrictCode => "restrict_code",
            Self::ReleaseCode => "release_code",
            Self::Scan => "scan",
            Self::StopAndQuarantine => "stop_and_quarantine",
            Self::ReleaseFromQuarantine => "release_from_quarantine",
            Self::CollectPackage => "collect_package",
            Self::RequestSample => "request_sample",
            Self::Offboard => "offboard",
            Self::KillProcess => "kill_process",
            Self::RemovePersistence => "remove_persistence",
            Self::DeleteFile => "delete_file",
            Self::CollectEvidence => "collect_evidence",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind that undoes this one, if it can be undone.
    pub fn undo(self) -> Option<Self> {
        match self {
            Self::Isolate => Some(Self::ReleaseIsolation),
            Self::RestrictCode => Some(Self::ReleaseCode),
            Self::StopAndQuarantine => Some(Self::ReleaseFromQuarantine),
            _ => None,
        }
    }

    /// Whether an action of this kind that a crash cut off may simply run
    /// again on restart. Only kinds whose effect is idempotent or read-only:
    /// applying (or removing) the isolation table or the exec restriction
    /// again gives the same state; a scan, a package collection or a sample
    /// upload only read. Killing a pid (it may have been reused), moving
    /// files, removing persistence and offboarding are reported `interrupted`
    /// instead, so a person decides.
    pub fn rerunnable(self) -> bool {
        matches!(
            self,
            Self::Isolate
                | Self::ReleaseIsolation
                | Self::RestrictCode
                | Self::ReleaseCode
                | Self::Scan
                | Self::CollectPackage
                | Self::RequestSample
                | Self::CollectEvidence
        )
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
        let undoable: Vec<_> = ActionKind::ALL.into_iter().filter(|k| k.undo().is_some()).collect();
        assert_eq!(undoable, vec![ActionKind::Isolate, ActionKind::RestrictCode, ActionKind::StopAndQuarantine]);
        assert!(!ActionKind::KillProcess.rerunnable());
    }
}
