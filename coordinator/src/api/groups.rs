//! `/device-groups` and `PATCH /devices/{id}` (a device's group).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{created, parse_uuid, ApiError, AppState, AuditDetail, Body, Caller};
use crate::clock::rfc3339;
use crate::investigations::Level;
use crate::store::Role;

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
