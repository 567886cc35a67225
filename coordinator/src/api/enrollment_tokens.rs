//! `/enrollment-tokens`: create, list and revoke enrollment tokens.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa::ToSchema;

use super::{created, page, ApiError, AppState, AuditDetail, Body, Caller, Id, IdPage, Params};
use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::store::{EnrollmentToken, NewEnrollmentToken};

const MAX_TTL_HOURS: u32 = 24 * 365;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Device group the enrolled devices join (default `default`); created
    /// with the default group's automation level if it does not exist.
    #[serde(default = "default_group")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub group: String,
    /// Hours until the token expires (default 24).
    #[serde(default = "default_ttl")]
    #[schema(minimum = 1, maximum = 8760)]
    pub expires_in_hours: u32,
    /// How many devices may enroll with it (default 1).
    #[serde(default = "default_uses")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_uses: u32,
}

fn default_group() -> String {
    "default".into()
}
fn default_ttl() -> u32 {
    24
}
fn default_uses() -> u32 {
    1
}

/// revoked, suspended, expired, used_up or active.
pub fn token_state(t: &EnrollmentToken) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.suspended_at.is_some() {
        "suspended"
    } else if t.expires_at <= now_ms() {
        "expired"
    } else if t.uses_left == 0 {
        "used_up"
    } else {
        "active"
    }
}

fn token_json(t: &EnrollmentToken) -> Value {
    let state = token_state(t);
    json!({
        "id": t.id,
        "group": t.group,
        "state": state,
        "created_by": t.created_by,
        "created_at": rfc3339(t.created_at),
        "expires_at": rfc3339(t.expires_at),
        "max_uses": t.max_uses,
        "uses_left": t.uses_left,
        "revoked_at": t.revoked_at.map(rfc3339),
        "suspended_at": t.suspended_at.map(rfc3339),
        "suspended_reason": t.suspended_reason,
    })
}

/// Create an enrollment token.
///
/// The answer holds the secret and the enroll command, shown once.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "tokens", security(("bearer" = ["admin"])),
    request_body = CreateToken,
    responses((status = 201, description = "The token with its secret and the enroll command (shown once)", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateToken>,
) -> Result<Response, ApiError> {
    let issued = issue(&state, &caller.name, &req.group, req.expires_in_hours, req.max_uses).await?;
    let mut body = token_json(&issued.token);
    body["token"] = json!(issued.secret);
    body["ca_fingerprint"] = json!(issued.ca_fingerprint);
    body["enroll_command"] = json!(issued.command);
    let mut response = created(body);
    response.extensions_mut().insert(AuditDetail(format!(
        "token_id={} group={} max_uses={} expires_in_hours={}",
        issued.token.id, issued.token.group, req.max_uses, req.expires_in_hours
    )));
    Ok(response)
}

/// A new enrollment token with what is shown of it once.
pub struct Issued {
    pub token: EnrollmentToken,
    pub secret: String,
    pub ca_fingerprint: String,
    /// The `picket-agent enroll …` line to run on a device.
    pub command: String,
}

/// Creates an enrollment token for `group` (the API's and the console's
/// way). A token for a new group creates the group, with the default
/// group's automation level.
pub async fn issue(state: &AppState, by: &str, group: &str, hours: u32, max_uses: u32) -> Result<Issued, ApiError> {
    if !super::groups::valid_name(group) {
        return Err(ApiError::BadRequest(super::groups::NAME_RULE.into()));
    }
    if !(1..=MAX_TTL_HOURS).contains(&hours) {
        return Err(ApiError::BadRequest(format!("expires_in_hours must be 1..={MAX_TTL_HOURS}")));
    }
    if !(1..=1_000_000).contains(&max_uses) {
        return Err(ApiError::BadRequest("max_uses must be 1..=1000000".into()));
    }
    if state.store.device_group(group).await?.is_none() {
        let level =
            state.store.device_group("default").await?.map(|g| g.automation_level).unwrap_or_else(|| "full".into());
        state.store.put_device_group(group, &level, "created with an enrollment token", true).await?;
    }
    let new = NewEnrollmentToken {
        group,
        created_by: by,
        expires_at: now_ms() + i64::from(hours) * 3_600_000,
        max_uses: i64::from(max_uses),
    };
    let (token, secret) = state.store.create_enrollment_token(&new).await?;
    let ca_fingerprint = state.gateway.ca.fingerprint();
    let command = format!(
        "picket-agent enroll --coordinator {} --token {} --ca-fingerprint {}",
        state.advertise_agent_address, secret, ca_fingerprint
    );
    Ok(Issued { token, secret, ca_fingerprint, command })
}

/// List enrollment tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "tokens", security(("bearer" = ["admin"])),
    params(IdPage), responses((status = 200, description = "A page of tokens", body = Object)))]
pub async fn list(State(state): State<AppState>, Params(q): Params<IdPage>) -> Result<Json<Value>, ApiError> {
    let found = state.store.enrollment_tokens(q.cursor().as_deref(), q.limit()?).await?;
    Ok(page::<Value>(found.items.iter().map(token_json).collect(), found.next_cursor))
}

/// Revoke an enrollment token.
#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", tag = "tokens", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 200, description = "The revoked token", body = Object)))]
pub async fn revoke(State(state): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let id = id.to_string();
    let found = state.store.revoke_enrollment_token(&id).await?;
    changed(&state, &id, found, format!("token_id={id}")).await
}

/// The answer to a change of token `id` (`found`: whether it exists).
async fn changed(state: &AppState, id: &str, found: bool, detail: String) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound(format!("no enrollment token {id:?}"));
    if !found {
        return Err(missing());
    }
    let token = state.store.enrollment_token(id).await?.ok_or_else(missing)?;
    let mut response = Json(token_json(&token)).into_response();
    response.extensions_mut().insert(AuditDetail(detail));
    Ok(response)
}

/// Let a token suspended by a device's revocation enroll devices again.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens/{id}/resume", tag = "tokens", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 200, description = "The token", body = Object)))]
pub async fn resume(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Response, ApiError> {
    let id = id.to_string();
    let found = state.store.resume_enrollment_token(&id).await?;
    if found {
        tracing::warn!(token = %id, by = %caller.name, "enrollment token resumed");
    }
    changed(&state, &id, found, format!("token_id={id} resumed")).await
}
