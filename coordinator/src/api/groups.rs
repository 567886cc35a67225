//! `/device-groups` and `PATCH /devices/{id}` (a device's group).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{created, ApiError, AppState, AuditDetail, Body, Id};
use crate::clock::rfc3339;
use crate::investigations::Level;

/// What a group name may be (`^[A-Za-z0-9._-]{1,64}$` in the schemas).
pub const NAME_RULE: &str = "a group name is 1 to 64 of letters, digits, '-', '_', '.'";

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

/// List device groups and their automation levels.
#[utoipa::path(get, path = "/api/v1/device-groups", tag = "devices", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Every group", body = Object)))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let groups = state.store.device_groups().await?;
    Ok(Json(json!({ "items": groups.iter().map(|g| json!({
        "name": g.name, "automation_level": g.automation_level, "description": g.description,
        "created_at": rfc3339(g.created_at) })).collect::<Vec<_>>() })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    automation_level: Level,
    #[serde(default)]
    description: String,
}

/// Create a device group with an automation level.
#[utoipa::path(post, path = "/api/v1/device-groups", tag = "devices", security(("bearer" = ["admin"])),
    request_body = NewGroup, responses((status = 201, description = "The new group", body = Object)))]
pub async fn create_group(State(state): State<AppState>, Body(b): Body<NewGroup>) -> Result<Response, ApiError> {
    if !valid_name(&b.name) {
        return Err(ApiError::BadRequest(NAME_RULE.into()));
    }
    let level = b.automation_level.as_str();
    if !state.store.put_device_group(&b.name, level, &b.description, true).await? {
        return Err(ApiError::Conflict(format!("group {:?} exists", b.name)));
    }
    let mut r = created(json!({ "name": b.name, "automation_level": level, "description": b.description }));
    r.extensions_mut().insert(AuditDetail(format!("group {} automation {level}", b.name)));
    Ok(r)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    automation_level: Option<Level>,
    description: Option<String>,
}

/// Change a group's automation level or description.
#[utoipa::path(patch, path = "/api/v1/device-groups/{name}", tag = "devices", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Group name")), request_body = GroupChange,
    responses((status = 200, description = "The group", body = Object)))]
pub async fn update_group(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body<GroupChange>,
) -> Result<Response, ApiError> {
    let g = state.store.device_group(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no group {name:?}")))?;
    let lvl = b.automation_level.map_or(g.automation_level, |l| l.as_str().to_string());
    let description = b.description.unwrap_or(g.description);
    state.store.put_device_group(&name, &lvl, &description, false).await?;
    let mut r = Json(json!({ "name": name, "automation_level": lvl, "description": description })).into_response();
    r.extensions_mut().insert(AuditDetail(format!("group {name} automation {lvl}")));
    Ok(r)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceChange {
    group: String,
}

/// Move a device to another group (which must exist).
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "Device id")), request_body = DeviceChange,
    responses((status = 200, description = "The device", body = Object)))]
pub async fn update_device(
    State(state): State<AppState>,
    Id(id): Id,
    Body(b): Body<DeviceChange>,
) -> Result<Response, ApiError> {
    if state.store.device(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    if state.store.device_group(&b.group).await?.is_none() {
        return Err(ApiError::NotFound(format!("no group {:?}; create it first", b.group)));
    }
    if !state.store.set_device_group(id, &b.group).await? {
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    let mut r = Json(super::devices::device_json(&state, &device)).into_response();
    r.extensions_mut().insert(AuditDetail(format!("group {}", b.group)));
    Ok(r)
}
