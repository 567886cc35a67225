//! `/users`: the named people who sign in to the console. Admin only.
//! Passwords are stored as Argon2id hashes; one the server generates is in
//! the response once and nowhere else. Disabling a user or resetting their
//! password ends all their console sessions.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{created, ApiError, AppState, AuditDetail, Body, Caller, UserName};
use crate::clock::rfc3339;
use crate::store::{Role, User};
use crate::users::{check_name, check_password, generate_password, hash_blocking};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1–64 of a-z, 0-9, '.', '_', '-'.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub name: String,
    pub role: Role,
    /// At least 12 characters; without it one is generated and returned once.
    #[serde(default)]
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// At least 12 characters; without it one is generated and returned once.
    #[serde(default)]
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "role": u.role,
        "state": if u.disabled_at.is_some() { "disabled" } else { "active" },
        "created_by": u.created_by,
        "created_at": rfc3339(u.created_at),
        "password_changed_at": rfc3339(u.password_changed_at),
        "disabled_at": u.disabled_at.map(rfc3339),
    })
}

/// The password given, checked, or a generated one (then also returned).
fn password_or_generated(given: Option<String>) -> Result<(String, bool), ApiError> {
    match given {
        Some(p) => check_password(&p).map(|()| (p, false)).map_err(ApiError::BadRequest),
        None => Ok((generate_password(), true)),
    }
}

/// Create a user with a role (the password is hashed with Argon2id).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = ["admin"])),
    request_body = CreateUser,
    responses((status = 201, description = "The user, and the password if it was generated (shown once)", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateUser>,
) -> Result<Response, ApiError> {
    let (user, generated) = add_user(&state, &caller.name, &req.name, req.role, req.password).await?;
    let mut body = user_json(&user);
    if let Some(password) = generated {
        body["password"] = json!(password);
    }
    let mut response = created(body);
    response.extensions_mut().insert(AuditDetail(format!("user={} role={}", user.name, user.role.as_str())));
    Ok(response)
}

/// Creates user `name` (the API's and the console's way); the password
/// when it was generated, to show once.
pub async fn add_user(
    state: &AppState,
    by: &str,
    name: &str,
    role: Role,
    password: Option<String>,
) -> Result<(User, Option<String>), ApiError> {
    check_name(name).map_err(ApiError::BadRequest)?;
    let (password, generated) = password_or_generated(password)?;
    let hash = hash_blocking(password.clone()).await.map_err(ApiError::internal)?;
    if !state.store.create_user(name, role, &hash, by).await? {
        return Err(ApiError::Conflict(format!("a user named {name:?} already exists")));
    }
    Ok((existing(state, name).await?, generated.then_some(password)))
}

/// List users (never their password hashes).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = ["admin"])),
    responses((status = 200, description = "Users by name", body = Object)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = state.store.users().await?;
    Ok(Json(json!({ "items": users.iter().map(user_json).collect::<Vec<_>>(), "next_cursor": null })))
}

async fn existing(state: &AppState, name: &str) -> Result<User, ApiError> {
    Ok(state.store.user(name).await?.ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?.0)
}

/// Disable a user: no sign-in, and every console session ends now. An
/// admin cannot disable the last enabled admin, nor themselves.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "users", security(("bearer" = ["admin"])),
    params(("name" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", description = "User name")),
    responses((status = 200, description = "The user", body = Object)))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    UserName(name): UserName,
) -> Result<Response, ApiError> {
    disable_user(&state, &caller.identity, &caller.name, &name).await?;
    respond(&state, &name, format!("disabled user {name}")).await
}

/// Disables user `name` as `identity` (`user:…`), who may not be them,
/// and never the last enabled admin.
pub async fn disable_user(state: &AppState, identity: &str, by: &str, name: &str) -> Result<(), ApiError> {
    let user = existing(state, name).await?;
    if identity == format!("user:{name}") {
        return Err(ApiError::Conflict("you cannot disable yourself; ask another admin".into()));
    }
    if user.role == Role::Admin && user.disabled_at.is_none() {
        let admins =
            state.store.users().await?.iter().filter(|u| u.role == Role::Admin && u.disabled_at.is_none()).count();
        if admins <= 1 {
            return Err(ApiError::Conflict("this is the last enabled admin; create another admin first".into()));
        }
    }
    state.store.set_user_disabled(name, true).await?;
    tracing::warn!(user = %name, %by, "user disabled; their console sessions ended");
    Ok(())
}

/// Enable a disabled user again.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "users", security(("bearer" = ["admin"])),
    params(("name" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", description = "User name")),
    responses((status = 200, description = "The user", body = Object)))]
pub async fn enable(State(state): State<AppState>, UserName(name): UserName) -> Result<Response, ApiError> {
    enable_user(&state, &name).await?;
    respond(&state, &name, format!("enabled user {name}")).await
}

pub async fn enable_user(state: &AppState, name: &str) -> Result<(), ApiError> {
    existing(state, name).await?;
    state.store.set_user_disabled(name, false).await?;
    Ok(())
}

/// Set a new password (given, or generated and returned once); every
/// console session of the user ends.
#[utoipa::path(post, path = "/api/v1/users/{name}/reset-password", tag = "users", security(("bearer" = ["admin"])),
    params(("name" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", description = "User name")),
    request_body = ResetPassword,
    responses((status = 200, description = "The user, and the password if it was generated (shown once)", body = Object)))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    UserName(name): UserName,
    Body(req): Body<ResetPassword>,
) -> Result<Response, ApiError> {
    let generated = reset_user_password(&state, &caller.name, &name, req.password).await?;
    let mut body = user_json(&existing(&state, &name).await?);
    if let Some(password) = generated {
        body["password"] = json!(password);
    }
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(AuditDetail(format!("reset the password of {name}")));
    Ok(response)
}

/// Sets user `name`'s password (given, or generated and returned to show
/// once); every console session of the user ends.
pub async fn reset_user_password(
    state: &AppState,
    by: &str,
    name: &str,
    password: Option<String>,
) -> Result<Option<String>, ApiError> {
    existing(state, name).await?;
    let (password, generated) = password_or_generated(password)?;
    let hash = hash_blocking(password.clone()).await.map_err(ApiError::internal)?;
    state.store.set_password(name, &hash).await?;
    tracing::warn!(user = %name, %by, "password reset; the user's console sessions ended");
    Ok(generated.then_some(password))
}

async fn respond(state: &AppState, name: &str, detail: String) -> Result<Response, ApiError> {
    let user = existing(state, name).await?;
    let mut response = Json(user_json(&user)).into_response();
    response.extensions_mut().insert(AuditDetail(detail));
    Ok(response)
}
