//! `/api-tokens`: bearer tokens, each for one person (or integration) with a
//! role and an optional expiry; listed without their secrets, revoked from
//! the next request on.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa::ToSchema;

use super::{created, ApiError, AppState, AuditDetail, Body, Caller, Id};
use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::store::{ApiToken, NewApiToken, Role, TokenKind};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// Unique; shown in audit and as requestor (surrounding blanks dropped).
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub name: String,
    pub role: Role,
    /// The person the token is for (default: its name). Two tokens of one
    /// person count as one for the two-person rule.
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub user: Option<String>,
    /// `user` (default) or `integration` (its actions' source is `api`).
    #[serde(default)]
    pub kind: Option<TokenKind>,
    /// Days until it stops working (default: never; at most 3650).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// 1 to 128 characters, no control characters, at least one visible.
fn printable(what: &str, s: &str) -> Result<(), ApiError> {
    if !crate::actions::visible(s) || s.chars().count() > 128 || s.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("{what} must be 1 to 128 printable characters")));
    }
    Ok(())
}

fn token_json(t: &ApiToken) -> Value {
    let state = match (t.revoked_at, t.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(e)) if e <= now_ms() => "expired",
        _ => "active",
    };
    json!({
        "id": t.id,
        "name": t.name,
        "user": t.user,
        "kind": t.kind,
        "role": t.role,
        "state": state,
        "created_by": t.created_by,
        "created_at": rfc3339(t.created_at),
        "expires_at": t.expires_at.map(rfc3339),
        "revoked_at": t.revoked_at.map(rfc3339),
    })
}

/// Create an API token for a person or an integration, with a role.
#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "tokens", security(("bearer" = ["admin"])),
    request_body = CreateApiToken,
    responses((status = 201, description = "The token with its secret (shown once)", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateApiToken>,
) -> Result<Response, ApiError> {
    printable("name", &req.name)?;
    if let Some(u) = &req.user {
        printable("user", u)?;
    }
    let name = req.name.trim();
    let user = req.user.as_deref().map(str::trim);
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(now_ms() + i64::from(d) * 86_400_000),
        Some(d) => return Err(ApiError::BadRequest(format!("expires_in_days must be 1..=3650, got {d}"))),
    };
    if state.store.api_token_name_taken(name).await? {
        return Err(ApiError::Conflict(format!("an API token named {name:?} already exists")));
    }
    let new = NewApiToken {
        name,
        user,
        kind: req.kind.unwrap_or(TokenKind::User),
        role: req.role,
        created_by: &caller.name,
        expires_at,
    };
    let (token, secret) = state.store.create_api_token(&new).await?;
    let mut body = token_json(&token);
    body["token"] = json!(secret);
    let mut response = created(body);
    response.extensions_mut().insert(AuditDetail(format!(
        "name={} user={} kind={} role={}",
        token.name,
        token.user,
        token.kind.as_str(),
        token.role.as_str()
    )));
    Ok(response)
}

/// List API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "tokens", security(("bearer" = ["admin"])),
    responses((status = 200, description = "Tokens", body = Object)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let tokens = state.store.api_tokens().await?;
    Ok(Json(json!({ "items": tokens.iter().map(token_json).collect::<Vec<_>>(), "next_cursor": null })))
}

/// Revoke a token: refused from its next request. The last live admin
/// token cannot be revoked (nobody could administer the coordinator).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "tokens", security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 200, description = "The revoked token", body = Object)))]
pub async fn revoke(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Response, ApiError> {
    let id = id.to_string();
    let token = state.store.api_token(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no API token {id}")))?;
    let live = |t: &ApiToken| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now_ms());
    if token.role == Role::Admin && live(&token) {
        let admins = state.store.api_tokens().await?.iter().filter(|t| t.role == Role::Admin && live(t)).count();
        if admins <= 1 {
            return Err(ApiError::Conflict("this is the last live admin token; create another admin first".into()));
        }
    }
    state.store.revoke_api_token(&id).await?;
    tracing::warn!(token = %id, name = %token.name, by = %caller.name, "API token revoked");
    let token = state.store.api_token(&id).await?.unwrap_or(token);
    let mut response = Json(token_json(&token)).into_response();
    response.extensions_mut().insert(AuditDetail(format!("revoked token {} ({})", token.id, token.name)));
    Ok(response)
}
