//! The JSON shapes of actions and alerts, as the API returns them and the
//! event sinks send them: one definition each, so the two never differ.

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::store::{Action, Alert};

/// The API (and event) shape of an action.
pub fn action_json(a: &Action) -> Value {
    let params: Value = serde_json::from_str(&a.params).unwrap_or(Value::Null);
    let result: Value = match (&a.result, &a.error) {
        (Some(r), _) => json!({ "output": serde_json::from_str::<Value>(r).unwrap_or(Value::String(r.clone())) }),
        (None, Some(e)) => json!({ "error": e, "reason": a.failure_reason }),
        (None, None) => Value::Null,
    };
    json!({
        "id": a.id,
        "kind": a.kind,
        "params": params,
        "device_id": a.device_id,
        "source": a.source,
        "status": a.status,
        "requestor": a.requestor,
        "comment": a.comment,
        "investigation_id": a.investigation_id,
        "decided_by": a.decided_by,
        "decision_comment": a.decision_comment,
        "progress": a.progress_phase.as_ref().map(|p| json!({ "phase": p, "percent": a.progress_percent })),
        "result": result,
        "undoes": a.undoes,
        "undone_by": a.undone_by,
        "created_at": rfc3339(a.created_at),
        "updated_at": rfc3339(a.updated_at),
        "expires_at": a.expires_at.map(rfc3339),
    })
}

/// One line saying what an alert is about.
pub fn alert_title(a: &Alert) -> String {
    use picket_common::url_blocklist;
    if a.namespace == url_blocklist::NAMESPACE && a.rule == url_blocklist::MAIL_RULE {
        if let Some(url) = url_blocklist::link_of_mail_path(&a.path) {
            return format!("mail links to a blocked URL: {url}");
        }
    }
    match a.path.strip_prefix(crate::click::CLICK_PATH).and_then(|rest| rest.split_once(' ')) {
        Some((recipient, url)) if a.rule == crate::click::BLOCKED_CLICK_RULE && a.namespace == "picket" => {
            format!("{recipient} clicked a blocked URL: {url}")
        }
        _ => format!("{} detected {}", a.rule, a.path),
    }
}

/// The API (and event) shape of an alert.
pub fn alert_json(a: &Alert) -> Value {
    json!({
        "id": a.id,
        "device_id": a.device_id,
        // As the device reported it; investigations decide by the
        // coordinator's own rules and indicators.
        "severity": a.severity,
        "status": a.status,
        "title": alert_title(a),
        "detection": {
            "path": a.path,
            "sha256": a.sha256,
            "size": a.size,
            "rule": a.rule,
            "namespace": a.namespace,
        },
        "source": a.source,
        "count": a.count,
        "first_seen": rfc3339(a.first_seen),
        "last_seen": rfc3339(a.last_seen),
    })
}
