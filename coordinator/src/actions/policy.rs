//! The approval policy (config section `[actions]`).

use picket_common::actions::ActionKind;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionPolicy {
    /// Manual actions of these kinds wait for an approver.
    pub approval_required_kinds: Vec<String>,
    /// The requestor of an action may not approve or reject it.
    pub two_person_rule: bool,
    /// Pending approvals expire after this many seconds (default 7 days).
    pub pending_expiry_secs: u64,
    /// Queued or sent actions of a device that stays offline time out after
    /// this many seconds (default 3 days).
    pub queued_expiry_secs: u64,
    /// How often deadlines are checked.
    pub expiry_check_secs: u64,
}

impl Default for ActionPolicy {
    fn default() -> Self {
        Self {
            approval_required_kinds: vec!["offboard".into()],
            two_person_rule: true,
            pending_expiry_secs: 7 * 24 * 3600,
            queued_expiry_secs: 3 * 24 * 3600,
            expiry_check_secs: 60,
        }
    }
}

impl ActionPolicy {
    pub fn validate(&self) -> Result<(), String> {
        for k in &self.approval_required_kinds {
            if ActionKind::parse(k).is_none() {
                return Err(format!("actions.approval_required_kinds: unknown kind {k:?}"));
            }
        }
        if self.pending_expiry_secs == 0 || self.queued_expiry_secs == 0 || self.expiry_check_secs == 0 {
            return Err("actions: expiry durations must be at least 1 second".into());
        }
        Ok(())
    }

    pub fn approval_required(&self, kind: ActionKind) -> bool {
        self.approval_required_kinds.iter().any(|k| k == kind.as_str())
    }

    pub fn pending_expiry_ms(&self) -> i64 {
        i64::try_from(self.pending_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    pub fn queued_expiry_ms(&self) -> i64 {
        i64::try_from(self.queued_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }
}
