//! `/alerts`: what agents found, its history, and how an analyst
//! classifies it.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::detection::Severity;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page, page_limit, parse_uuid, ApiError, AppState, AuditDetail, Body, Caller, Params};
use crate::clock::rfc3339;
use crate::store::{AlertFilter, AlertStatus, Role};
use crate::views::alert_json;

/// Where uploads are checked, and how big they may be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    status: Option<String>,
    device: Option<String>,
    severity: Option<String>,
    sha256: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /alerts`: most recently seen first.
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AlertQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let filter = AlertFilter {
        status: q
            .status
            .as_deref()
            .map(|s| {
                AlertStatus::parse(s)
                    .ok_or_else(|| ApiError::BadRequest(format!("status {s:?}: new, in_progress or resolved")))
            })
            .transpose()?,
        device: q.device.as_deref().map(parse_uuid).transpose()?,
        severity: q
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    ApiError::BadRequest(format!("severity {s:?}: malicious, suspicious or informational"))
                })
            })
            .transpose()?,
        sha256: q.sha256.map(|s| s.to_ascii_lowercase()),
    };
    if q.cursor.as_deref().is_some_and(|c| c.split_once(':').is_none()) {
        return Err(ApiError::BadRequest("cursor: use next_cursor from the previous page".into()));
    }
    let found = state.store.alerts(&filter, q.cursor.as_deref(), page_limit(q.limit)?).await?;
    Ok(page(found.items.iter().map(alert_json).collect(), found.next_cursor))
}

/// `GET /alerts/{id}`: the alert and its history.
pub async fn show_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let id = parse_uuid(&id)?;
    let alert = state.store.alert(id).await?.ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let history = state.store.alert_history(id).await?;
    let mut out = alert_json(&alert);
    out["classification"] = json!(state.store.alert_classification(id).await?);
    out["paths"] = state
        .store
        .alert_paths(id)
        .await?
        .iter()
        .map(|p| {
            json!({ "path": p.path, "first_seen": rfc3339(p.first_seen), "last_seen": rfc3339(p.last_seen),
            "investigation_id": p.investigation_id })
        })
        .collect();
    out["investigations"] = state
        .store
        .investigations_of_alert(id)
        .await?
        .iter()
        .map(|i| json!({ "id": i.id, "status": i.status }))
        .collect();
    out["history"] = history
        .iter()
        .map(|e| json!({ "event": e.kind, "status": e.status, "at": rfc3339(e.at), "actor": e.actor, "comment": e.comment }))
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertUpdate {
    status: String,
    #[serde(default)]
    comment: String,
}

/// `PATCH /alerts/{id}` (responder): set the status.
pub async fn update_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AlertUpdate>,
) -> Result<Response, ApiError> {
    caller.require(Role::Responder)?;
    let id = parse_uuid(&id)?;
    let status = AlertStatus::parse(&body.status)
        .ok_or_else(|| ApiError::BadRequest(format!("status {:?}: new, in_progress or resolved", body.status)))?;
    let alert = state
        .store
        .set_alert_status(id, status, &caller.name, &body.comment)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let mut response = Json(alert_json(&alert)).into_response();
    response.extensions_mut().insert(AuditDetail(format!("status {}", status.as_str())));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    classification: String,
    #[serde(default)]
    comment: String,
}

/// `POST /alerts/{id}/classify` (responder; approver for false_positive).
pub async fn classify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<Classify>,
) -> Result<Response, ApiError> {
    caller.require(Role::Responder)?;
    let id = parse_uuid(&id)?;
    let who = caller.requestor();
    let out = state.investigations.classify(id, &b.classification, &who, &b.comment).await?;
    let mut r = Json(out).into_response();
    r.extensions_mut().insert(AuditDetail(format!("alert {id} classified {}", b.classification)));
    Ok(r)
}
