//! `/api-tokens`: named bearer tokens with a role.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{created, ApiError, AppState, AuditDetail, Body, Caller};
use crate::store::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    pub name: String,
    pub role: Role,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateApiToken>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("name must be 1 to 128 printable characters".into()));
    }
    if state.store.api_token_name_taken(name).await? {
        return Err(ApiError::Conflict(format!("an API token named {name:?} already exists")));
    }
    let (token, secret) = state.store.create_api_token(name, req.role, &caller.name).await?;
    let mut response = created(json!({
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "token": secret,
    }));
    response.extensions_mut().insert(AuditDetail(format!("name={} role={}", token.name, token.role.as_str())));
    Ok(response)
}
