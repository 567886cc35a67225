//! `/alerts`: what agents found, its history, and how an analyst
//! classifies it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::detection::Severity;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::{page, page_limit, ApiError, AppState, AuditDetail, Body, Caller, Id, Params, TimeCursor};
use crate::clock::rfc3339;
use crate::store::{AlertFilter, AlertStatus};
use crate::views::alert_json;

/// The filters and page of `GET /alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    #[param(inline)]
    status: Option<AlertStatus>,
    device: Option<uuid::Uuid>,
    #[param(inline)]
    severity: Option<Severity>,
    /// The file's SHA-256, either case.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    #[param(inline)]
    cursor: Option<TimeCursor>,
}

/// List alerts, most recently seen first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("bearer" = ["viewer"])),
    params(AlertQuery), responses((status = 200, description = "A page of alerts", body = Object)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    Params(q): Params<AlertQuery>,
) -> Result<Json<Value>, ApiError> {
    let sha256 = q.sha256.map(|s| s.to_ascii_lowercase());
    if sha256.as_deref().is_some_and(|h| !picket_common::detection::is_sha256_hex(h)) {
        return Err(ApiError::BadRequest("sha256 must be 64 hex digits".into()));
    }
    let filter = AlertFilter { status: q.status, open: false, device: q.device, severity: q.severity, sha256 };
    let cursor = q.cursor.as_ref().map(|c| c.0.as_str());
    let found = state.store.alerts(&filter, cursor, page_limit(q.limit)?).await?;
    Ok(page(found.items.iter().map(alert_json).collect(), found.next_cursor))
}

/// An alert with its history, paths and investigations.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", security(("bearer" = ["viewer"])),
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 200, description = "The alert", body = Object)))]
pub async fn show_alert(State(state): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertUpdate {
    status: AlertStatus,
    #[serde(default)]
    comment: String,
}

/// Set an alert's status (new, in_progress, resolved).
#[utoipa::path(patch, path = "/api/v1/alerts/{id}", tag = "alerts", security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Alert id")), request_body = AlertUpdate,
    responses((status = 200, description = "The alert", body = Object)))]
pub async fn update_alert(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<AlertUpdate>,
) -> Result<Response, ApiError> {
    let status = body.status;
    let alert = state
        .store
        .set_alert_status(id, status, &caller.name, &body.comment)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let mut response = Json(alert_json(&alert)).into_response();
    response.extensions_mut().insert(AuditDetail(format!("status {}", status.as_str())));
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    /// true_positive, informational or false_positive (approver).
    #[schema(pattern = "^(true_positive|informational|false_positive)$")]
    classification: String,
    #[serde(default)]
    comment: String,
}

/// Classify an alert.
///
/// false_positive undoes its actions, allows the file and suppresses it; it needs the approver role.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/classify", tag = "alerts", security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Alert id")), request_body = Classify,
    responses((status = 200, description = "The classification and what it did", body = Object)))]
pub async fn classify(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<Classify>,
) -> Result<Response, ApiError> {
    let who = caller.requestor();
    let out = state.investigations.classify(id, &b.classification, &who, &b.comment).await?;
    let mut r = Json(out).into_response();
    r.extensions_mut().insert(AuditDetail(format!("alert {id} classified {}", b.classification)));
    Ok(r)
}
