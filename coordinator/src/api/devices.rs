//! `/devices`: the device registry.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::proto::RefusalReason;
use serde_json::{json, Value};

use super::{page, ApiError, AppState, AuditDetail, Caller, Id, IdPage, Params};
use crate::clock::rfc3339;
use crate::store::{Device, DeviceStatus};

/// The API shape of a device; `status` folds the registry status and whether
/// a session is live on this coordinator.
pub fn device_json(state: &AppState, d: &Device) -> Value {
    let session = state.gateway.session(&d.id);
    let status = match (d.status, &session) {
        (DeviceStatus::Revoked, _) => "revoked",
        (DeviceStatus::Offboarded, _) => "offboarded",
        (DeviceStatus::Active, Some(_)) => "online",
        (DeviceStatus::Active, None) => "offline",
    };
    let last_seen = session.as_ref().map(|s| s.last_seen).or(d.last_seen);
    json!({
        "id": d.id,
        "hostname": d.hostname,
        "status": status,
        "group": d.group,
        "os": d.os,
        "kernel": d.kernel,
        "agent_version": d.agent_version,
        "ip": session.as_ref().map(|s| s.peer.ip().to_string()).unwrap_or_else(|| d.ip.clone()),
        "enrolled_at": rfc3339(d.enrolled_at),
        "first_seen": d.first_seen.map(rfc3339),
        "last_seen": last_seen.map(rfc3339),
        "connected_since": session.as_ref().map(|s| rfc3339(s.connected_at)),
        "certificate_expires_at": rfc3339(d.cert_not_after),
        "capabilities": d.capabilities,
        "mail_host": d.mail_domains.as_ref().map(|domains| json!({ "internal_domains": domains })),
        "alerts_dropped": d.alerts_dropped,
        "content": {
            "rules_version": d.rules_version,
            "indicators_version": d.indicators_version,
            "rules_error": d.rules_error,
            "rules_current": state.gateway.content.rules_version().is_none_or(|v| v == d.rules_version),
        },
    })
}

/// List devices, by id.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = ["viewer"])),
    params(IdPage), responses((status = 200, description = "A page of devices", body = Object)))]
pub async fn list(State(state): State<AppState>, Params(q): Params<IdPage>) -> Result<Json<Value>, ApiError> {
    let found = state.store.devices(q.cursor().as_deref(), q.limit()?).await?;
    let items = found.items.iter().map(|d| device_json(&state, d)).collect();
    Ok(page::<Value>(items, found.next_cursor))
}

/// Show one device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = ["viewer"])),
    params(("id" = Uuid, Path, description = "Device id")),
    responses((status = 200, description = "The device", body = Object)))]
pub async fn show(State(state): State<AppState>, Id(id): Id) -> Result<Json<Value>, ApiError> {
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    Ok(Json(device_json(&state, &device)))
}

/// Revoke a device: its certificate is refused from now on, its live
/// session, if any, is cut, and the enrollment token that enrolled it is
/// suspended — whoever holds the device may hold that token too, and must
/// not enroll a new identity with it until an admin resumes the token.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "Device id")),
    responses((status = 200, description = "The revoked device", body = Object)))]
pub async fn revoke(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Response, ApiError> {
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    if device.status == DeviceStatus::Offboarded {
        return Err(ApiError::Conflict(format!("device {id} is offboarded")));
    }
    state.store.set_device_status(id, DeviceStatus::Revoked).await?;
    state.gateway.directory.set(id, DeviceStatus::Revoked);
    let cut = state.gateway.sessions.disconnect(id, RefusalReason::Revoked);
    let reason = format!("device {id} ({}) was revoked by {}", device.hostname, caller.name);
    let suspended = state.store.suspend_enrollment_token_of(id, &reason).await?;
    tracing::warn!(device = %id, by = %caller.name, session_cut = cut, token = ?suspended, "device revoked");
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    let mut body = device_json(&state, &device);
    body["enrollment_token_suspended"] = json!(suspended);
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(AuditDetail(format!(
        "device={id} hostname={} session_cut={cut} enrollment_token_suspended={}",
        device.hostname,
        suspended.as_deref().unwrap_or("none")
    )));
    Ok(response)
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardingTokenRequest {
    /// Hours the token stays valid (default 24, at most 720).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: Option<u32>,
}

/// Offboard a device that cannot reach the coordinator: the device is
/// offboarded here at once (certificate refused, session cut) and the token
/// lets `picket-agent offboard --token` clean the machine up offline.
#[utoipa::path(post, path = "/api/v1/devices/{id}/offboarding-token", tag = "devices",
    security(("bearer" = ["admin"])), params(("id" = Uuid, Path, description = "Device id")),
    request_body = OffboardingTokenRequest,
    responses((status = 201, description = "The device is offboarded; the token cleans it up offline", body = Object)))]
pub async fn offboarding_token(
    State(state): State<AppState>,
    Id(id): Id,
    super::Body(req): super::Body<OffboardingTokenRequest>,
) -> Result<Response, ApiError> {
    let hours = req.expires_in_hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::BadRequest("expires_in_hours must be 1..=720".into()));
    }
    let device = state.store.device(id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    let expires_at = crate::clock::now_ms() + i64::from(hours) * 3_600_000;
    let token = state.gateway.ca.offboarding_token(id, expires_at).map_err(ApiError::internal)?;
    if !state.gateway.mark_offboarded(id).await {
        return Err(ApiError::internal("could not mark the device offboarded"));
    }
    state.gateway.sessions.disconnect(id, RefusalReason::Offboarded);
    let body = serde_json::json!({
        "device_id": id,
        "hostname": device.hostname,
        "token": token,
        "expires_at": rfc3339(expires_at),
        "offboard_command": format!("picket-agent offboard --token {token}"),
    });
    let mut response = (axum::http::StatusCode::CREATED, Json(body)).into_response();
    response.extensions_mut().insert(AuditDetail(format!("device={id} hostname={} offboarded", device.hostname)));
    Ok(response)
}
