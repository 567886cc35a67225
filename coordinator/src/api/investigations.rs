//! `/investigations`: list, show, start, terminate, approve expansion.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::{created, ApiError, AppState, Body, Caller, Id, Params};
use crate::clock::rfc3339;
use crate::store::Investigation;

async fn investigation_json(state: &AppState, inv: &Investigation, full: bool) -> Result<Value, ApiError> {
    let mut out = json!({
        "id": inv.id,
        "device_id": inv.device_id,
        "alert_id": inv.alert_id,
        "status": inv.status,
        "title": inv.title,
        "subject": inv.subject,
        "created_by": inv.created_by,
        "created_at": rfc3339(inv.created_at),
        "updated_at": rfc3339(inv.updated_at),
    });
    if full {
        out["evidence"] = inv.evidence.clone();
        let actions = state.store.investigation_actions(inv.id).await?;
        out["actions"] = actions.iter().map(crate::views::action_json).collect();
        let events = state.store.investigation_events(inv.id).await?;
        out["timeline"] = events
            .iter()
            .map(|e| json!({ "at": rfc3339(e.at), "actor": e.actor, "event": e.event, "detail": e.detail }))
            .collect();
    }
    Ok(out)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListInvestigations {
    /// Only investigations in this status (running, remediated, …).
    status: Option<String>,
    device: Option<uuid::Uuid>,
    /// How many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List investigations, newest first.
#[utoipa::path(get, path = "/api/v1/investigations", tag = "investigations", security(("bearer" = ["viewer"])),
    params(ListInvestigations), responses((status = 200, description = "Investigations", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Params(q): Params<ListInvestigations>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let found = state.store.investigations(q.status.as_deref(), q.device, limit).await?;
    let mut items = Vec::new();
    for inv in &found {
        items.push(investigation_json(&state, inv, false).await?);
    }
    Ok(Json(json!({ "items": items })))
}

/// An investigation: evidence, verdicts, actions, timeline.
#[utoipa::path(get, path = "/api/v1/investigations/{id}", tag = "investigations",
    security(("bearer" = ["viewer"])), params(("id" = Uuid, Path, description = "Investigation id")),
    responses((status = 200, description = "The investigation", body = Object)))]
pub async fn show(State(state): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let inv =
        state.store.investigation(id).await?.ok_or_else(|| ApiError::NotFound(format!("no investigation {id}")))?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartInvestigation {
    /// The file on the device (absolute).
    #[schema(pattern = "^/")]
    path: String,
    /// Its SHA-256, when known.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
}

/// Investigate a file on a device by hand.
#[utoipa::path(post, path = "/api/v1/devices/{id}/investigations", tag = "investigations",
    security(("bearer" = ["responder"])), params(("id" = Uuid, Path, description = "Device id")),
    request_body = StartInvestigation,
    responses((status = 201, description = "The investigation, running", body = Object)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Id(device): Id,
    Body(b): Body<StartInvestigation>,
) -> Result<Response, ApiError> {
    if !b.path.starts_with('/') {
        return Err(ApiError::BadRequest("path must be absolute".into()));
    }
    if b.sha256.as_deref().is_some_and(|h| !picket_common::detection::is_sha256_hex(&h.to_ascii_lowercase())) {
        return Err(ApiError::BadRequest("sha256 must be 64 hex digits".into()));
    }
    if state.store.device(device).await?.is_none() {
        return Err(ApiError::NotFound(format!("no device {device}")));
    }
    let inv = state.investigations.open(device, None, &b.path, b.sha256.as_deref(), &caller.name).await?;
    Ok(created(investigation_json(&state, &inv, false).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    #[serde(default)]
    comment: String,
}

/// Approve expanding an investigation to 10 or more devices.
#[utoipa::path(post, path = "/api/v1/investigations/{id}/approve-expansion", tag = "investigations",
    security(("bearer" = ["approver"])), params(("id" = Uuid, Path, description = "Investigation id")),
    responses((status = 200, description = "The investigation", body = Object)))]
pub async fn approve_expansion(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let who = caller.requestor();
    let inv = state.investigations.approve_expansion(id, &who).await?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}

/// Terminate an investigation; what has not run is cancelled.
#[utoipa::path(post, path = "/api/v1/investigations/{id}/terminate", tag = "investigations",
    security(("bearer" = ["responder"])), params(("id" = Uuid, Path, description = "Investigation id")),
    request_body = Terminate, responses((status = 200, description = "The investigation", body = Object)))]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(b): Body<Terminate>,
) -> Result<Json<Value>, ApiError> {
    let who = caller.requestor();
    let inv = state.investigations.terminate(id, &who, &b.comment).await?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}
