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

    /// Whether the requestor of an action of `kind` may not decide it:
    /// the configured rule, and always for what cannot be undone by design
    /// (hard deletes: asked for by one approver, approved by another).
    pub fn two_person(&self, kind: ActionKind) -> bool {
        self.two_person_rule || kind == ActionKind::HardDeleteEmail
    }

    /// The least role that may ask for `kind` (hard deletes: an approver).
    pub fn role_to_ask(&self, kind: ActionKind) -> crate::store::Role {
        if kind == ActionKind::HardDeleteEmail {
            crate::store::Role::Approver
        } else {
            crate::store::Role::Responder
        }
    }

    pub fn approval_required(&self, kind: ActionKind) -> bool {
        self.approval_required_kinds.iter().any(|k| k == kind.as_str())
    }

    /// Why an action needs an approver whatever the configuration and
    /// whoever asks: offboarding, hard deletion of mail, anything forced
    /// past the agent's own refusals (`force`), and samples of places that
    /// hold secrets. (File deletions go to the vault and can be undone.)
    pub fn always_needs_approval(&self, kind: ActionKind, params: &serde_json::Value) -> Option<String> {
        if kind == ActionKind::Offboard {
            return Some("offboarding always needs an approver".into());
        }
        if kind == ActionKind::HardDeleteEmail {
            return Some("a hard delete cannot be undone: it always needs a second approver".into());
        }
        if params.get("force").and_then(serde_json::Value::as_bool) == Some(true) {
            return Some("a forced action always needs an approver".into());
        }
        if kind == ActionKind::RequestSample {
            if let Some(path) = params.get("path").and_then(serde_json::Value::as_str) {
                if let Some(why) = sensitive_sample_path(path) {
                    return Some(format!("a sample of {path} ({why}) always needs an approver"));
                }
            }
        }
        None
    }

    pub fn pending_expiry_ms(&self) -> i64 {
        i64::try_from(self.pending_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    pub fn queued_expiry_ms(&self) -> i64 {
        i64::try_from(self.queued_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }
}

/// Why a requested sample path is sensitive, if it is: system
/// configuration and state, people's keys, credentials and browser
/// profiles, and any path the coordinator cannot judge (relative, `..`).
/// The agent refuses its own secrets and the shadow files outright.
pub fn sensitive_sample_path(path: &str) -> Option<&'static str> {
    let p = std::path::Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Some("not a plain absolute path");
    }
    const SYSTEM: [&str; 8] = ["/etc", "/root", "/var/lib", "/var/spool", "/var/backups", "/boot", "/proc", "/run"];
    if SYSTEM.iter().any(|d| p.starts_with(d)) {
        return Some("system configuration or state");
    }
    const PRIVATE: [&str; 8] = [".ssh", ".gnupg", ".aws", ".kube", ".docker", ".config", ".password-store", ".mozilla"];
    if p.components().any(|c| PRIVATE.iter().any(|d| c.as_os_str() == *d)) {
        return Some("a user's keys, credentials or settings");
    }
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    const SECRET_WORDS: [&str; 7] = ["key", "secret", "token", "passw", "credential", ".pem", "shadow"];
    if SECRET_WORDS.iter().any(|w| name.contains(w)) {
        return Some("its name says it holds a secret");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offboard_force_and_secret_samples_always_need_an_approver() {
        let p = ActionPolicy { approval_required_kinds: Vec::new(), ..ActionPolicy::default() };
        assert!(p.always_needs_approval(ActionKind::Offboard, &json!({})).is_some());
        assert!(p.always_needs_approval(ActionKind::DeleteFile, &json!({"path": "/tmp/x", "force": true})).is_some());
        assert!(p.always_needs_approval(ActionKind::DeleteFile, &json!({"path": "/tmp/x"})).is_none());
        for sensitive in ["/etc/passwd", "/home/ann/.ssh/config", "/srv/app/db-password.txt", "/tmp/../etc/x", "x"] {
            let params = json!({ "path": sensitive });
            assert!(p.always_needs_approval(ActionKind::RequestSample, &params).is_some(), "{sensitive}");
        }
        for plain in ["/tmp/dropper.bin", "/home/ann/Downloads/invoice.pdf.exe", "/opt/app/bin/run"] {
            assert!(p.always_needs_approval(ActionKind::RequestSample, &json!({ "path": plain })).is_none(), "{plain}");
        }
    }

    #[test]
    fn a_hard_delete_takes_an_approver_to_ask_and_another_to_approve_whatever_the_configuration() {
        let lax = ActionPolicy { approval_required_kinds: Vec::new(), two_person_rule: false, ..Default::default() };
        let kind = ActionKind::HardDeleteEmail;
        assert!(lax.always_needs_approval(kind, &json!({})).is_some());
        assert!(lax.two_person(kind) && !lax.two_person(ActionKind::SoftDeleteEmail));
        assert_eq!(lax.role_to_ask(kind), crate::store::Role::Approver);
        assert_eq!(lax.role_to_ask(ActionKind::QuarantineEmail), crate::store::Role::Responder);
    }
}
