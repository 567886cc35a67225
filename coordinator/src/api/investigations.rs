//! `/investigations`: list, show, start, terminate, approve expansion.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{created, parse_uuid, ApiError, AppState, Body, Caller, Params};
use crate::clock::rfc3339;
use crate::store::{Investigation, Role};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListInvestigations {
    status: Option<String>,
    device: Option<String>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListInvestigations>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let device = q.device.as_deref().map(parse_uuid).transpose()?;
    let limit = super::page_limit(q.limit)?;
    let found = state.store.investigations(q.status.as_deref(), device, limit).await?;
    let mut items = Vec::new();
    for inv in &found {
        items.push(investigation_json(&state, inv, false).await?);
    }
    Ok(Json(json!({ "items": items })))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let id = parse_uuid(&id)?;
    let inv =
        state.store.investigation(id).await?.ok_or_else(|| ApiError::NotFound(format!("no investigation {id}")))?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartInvestigation {
    path: String,
    #[serde(default)]
    sha256: Option<String>,
}

/// `POST /devices/{id}/investigations` (responder): investigate a file by hand.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<StartInvestigation>,
) -> Result<Response, ApiError> {
    caller.require(Role::Responder)?;
    let device = parse_uuid(&id)?;
    if !b.path.starts_with('/') {
        return Err(ApiError::BadRequest("path must be absolute".into()));
    }
    let inv = state.investigations.open(device, None, &b.path, b.sha256.as_deref(), &caller.name).await?;
    Ok(created(investigation_json(&state, &inv, false).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    #[serde(default)]
    comment: String,
}

/// `POST /investigations/{id}/approve-expansion` (approver).
pub async fn approve_expansion(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Approver)?;
    let id = parse_uuid(&id)?;
    let who = caller.requestor();
    let inv = state.investigations.approve_expansion(id, &who).await?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}

/// `POST /investigations/{id}/terminate` (responder).
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<Terminate>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Responder)?;
    let id = parse_uuid(&id)?;
    let who = caller.requestor();
    let inv = state.investigations.terminate(id, &who, &b.comment).await?;
    Ok(Json(investigation_json(&state, &inv, true).await?))
}
