//! `/device-groups`, `PATCH /devices/{id}` (group), `/investigations`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{created, parse_uuid, ApiError, AppState, AuditDetail, Body, Caller, Params};
use crate::clock::rfc3339;
use crate::investigations::Level;
use crate::store::{Investigation, Role};

fn level(s: &str) -> Result<&str, ApiError> {
    Level::parse(s)
        .map(|_| s)
        .ok_or_else(|| ApiError::BadRequest(format!("automation_level {s:?}: one of {}", Level::NAMES.join(", "))))
}

pub async fn list_groups(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let groups = state.store.device_groups().await?;
    Ok(Json(json!({ "items": groups.iter().map(|g| json!({
        "name": g.name, "automation_level": g.automation_level, "description": g.description,
        "created_at": rfc3339(g.created_at) })).collect::<Vec<_>>() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    automation_level: String,
    #[serde(default)]
    description: String,
}

/// `POST /device-groups` (admin).
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    Body(b): Body<NewGroup>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    if b.name.is_empty()
        || b.name.len() > 64
        || !b.name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
    {
        return Err(ApiError::BadRequest("name: 1 to 64 of letters, digits, '-', '_', '.'".into()));
    }
    level(&b.automation_level)?;
    if !state.store.put_device_group(&b.name, &b.automation_level, &b.description, true).await? {
        return Err(ApiError::Conflict(format!("group {:?} exists", b.name)));
    }
    let mut r =
        created(json!({ "name": b.name, "automation_level": b.automation_level, "description": b.description }));
    r.extensions_mut().insert(AuditDetail(format!("group {} automation {}", b.name, b.automation_level)));
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    automation_level: Option<String>,
    description: Option<String>,
}

/// `PATCH /device-groups/{name}` (admin).
pub async fn update_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(b): Body<GroupChange>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let g = state.store.device_group(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no group {name:?}")))?;
    let lvl = b.automation_level.unwrap_or(g.automation_level);
    level(&lvl)?;
    let description = b.description.unwrap_or(g.description);
    state.store.put_device_group(&name, &lvl, &description, false).await?;
    let mut r = Json(json!({ "name": name, "automation_level": lvl, "description": description })).into_response();
    r.extensions_mut().insert(AuditDetail(format!("group {name} automation {lvl}")));
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceChange {
    group: String,
}

/// `PATCH /devices/{id}` (admin): move a device to another group.
pub async fn update_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<DeviceChange>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let id = parse_uuid(&id)?;
    if state.store.device_group(&b.group).await?.is_none() {
        return Err(ApiError::BadRequest(format!("no group {:?}; create it first", b.group)));
    }
    if !state.store.set_device_group(id, &b.group).await? {
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    let mut r = Json(super::devices::device_json(&state, &device)).into_response();
    r.extensions_mut().insert(AuditDetail(format!("group {}", b.group)));
    Ok(r)
}

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
