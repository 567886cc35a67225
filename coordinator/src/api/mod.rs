//! The REST API under `/api/v1` (axum), one file per resource.
//!
//! Authentication: `Authorization: Bearer <API token>`; roles are ordered
//! viewer < responder < approver < admin, and each route's least role is
//! declared once, in its handler's `#[utoipa::path]` (see [`router`]). The
//! `authenticate` middleware resolves the caller, enforces the route's role
//! and writes the audit entry for every mutating call, whatever its
//! outcome. Errors are `{"error":{"code","message"}}`.

mod actions;
mod alerts;
mod api_tokens;
mod audit;
mod content;
mod devices;
mod enrollment_tokens;
mod error;
mod extract;
mod groups;
mod investigations;
pub mod links;
pub mod mail;
mod metrics;
mod openapi;
pub mod range;
mod samples;
pub mod server;
pub mod tls;
mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use actions::{actions_csv, csv_field};
pub use content::{activate_bundle, remove_indicator, set_indicator, RulesSettings};
pub use enrollment_tokens::{issue as issue_enrollment_token, token_state, Issued};
pub use error::ApiError;
pub use extract::{page_limit, Body, Id, IdPage, Params, Sha256Path, TimeCursor, UserName};
pub use groups::{valid_name as valid_group_name, NAME_RULE as GROUP_NAME_RULE};
pub use samples::{download as download_sample, package as download_package};
pub use users::{add_user, disable_user, enable_user, reset_user_password};

use crate::gateway::Gateway;
use crate::store::{NewAudit, Role, Store, TokenKind};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub gateway: Arc<Gateway>,
    /// `HOST:PORT` that agents should dial, for the printed enroll command.
    pub advertise_agent_address: String,
    pub actions: Arc<crate::actions::ActionCenter>,
    pub investigations: Arc<crate::investigations::Investigations>,
    pub rules: Arc<RulesSettings>,
    /// What `/metrics` serves between refreshes, and the API's own counters.
    pub metrics: Arc<metrics::ApiMetrics>,
    /// Console session timeouts and sign-in throttling.
    pub console: Arc<crate::console::Console>,
}

/// The API: every route comes from a handler's `#[utoipa::path]`, which
/// also gives its OpenAPI entry and, as the security scope, the least role
/// that may call it. `openapi::Roles` reads the roles back from the
/// document and `authenticate` enforces them for every route, so a route
/// cannot exist without its role and its spec entry: a route without a
/// role makes this function fail, and the coordinator with it, at start.
pub fn router(state: AppState) -> Result<Router, String> {
    let upload_bytes = state.rules.max_bundle_bytes * 2 + 64 * 1024;
    let upload_limit = DefaultBodyLimit::max(upload_bytes);
    let (rules_schemas, rules_paths, rules_route) = routes!(content::upload, content::list_rules);
    let v1 = OpenApiRouter::<AppState>::new()
        .routes(routes!(devices::list))
        .routes(routes!(devices::show, groups::update_device))
        .routes(routes!(devices::revoke))
        .routes(routes!(devices::offboarding_token))
        .routes(routes!(investigations::start))
        .routes(routes!(groups::list_groups, groups::create_group))
        .routes(routes!(groups::update_group))
        .routes(routes!(investigations::list))
        .routes(routes!(investigations::show))
        .routes(routes!(investigations::terminate))
        .routes(routes!(investigations::approve_expansion))
        .routes(routes!(actions::create))
        .routes(routes!(actions::list))
        .routes(routes!(actions::export_csv))
        .routes(routes!(actions::approve_many))
        .routes(routes!(actions::show))
        .routes(routes!(actions::approve))
        .routes(routes!(actions::reject))
        .routes(routes!(actions::cancel))
        .routes(routes!(actions::undo))
        .routes(routes!(samples::package))
        .routes(routes!(enrollment_tokens::create, enrollment_tokens::list))
        .routes(routes!(enrollment_tokens::revoke))
        .routes(routes!(enrollment_tokens::resume))
        .routes(routes!(api_tokens::create, api_tokens::list))
        .routes(routes!(api_tokens::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(users::reset_password))
        // JSON escaping can double the source; the handler enforces the real cap.
        .routes((rules_schemas, rules_paths, rules_route.layer(upload_limit)))
        .routes(routes!(content::add_indicator, content::list_indicators))
        .routes(routes!(content::delete_indicator))
        .routes(routes!(samples::list))
        .routes(routes!(samples::download))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::show_alert, alerts::update_alert))
        .routes(routes!(alerts::classify))
        .routes(routes!(mail::create))
        .routes(routes!(mail::show))
        .routes(routes!(links::clicks))
        .routes(routes!(links::blocked_urls));
    let roles = Arc::new(openapi::Roles::of(v1.get_openapi())?);
    let guard = Guard { state: state.clone(), roles };
    let v1 = v1.route_layer(middleware::from_fn_with_state(guard, authenticate));
    let public = OpenApiRouter::<AppState>::new()
        .routes(routes!(health))
        .routes(routes!(openapi::spec))
        .routes(routes!(metrics::metrics));
    openapi::Roles::check_public(public.get_openapi())?;
    let (app, document) = OpenApiRouter::with_openapi(openapi::base()).merge(public).merge(v1).split_for_parts();
    let document = serde_json::to_vec(&openapi::finish(document)?).map_err(|e| e.to_string())?;
    let document = openapi::Document(document.into());
    Ok(app
        .merge(crate::console::router(upload_bytes))
        .fallback(not_found)
        .layer(axum::Extension(document))
        .layer(middleware::from_fn(server::request_timeout))
        .with_state(state))
}

/// Liveness and basic facts.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "The coordinator is up", body = Object)))]
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "database": match state.store.backend() {
            crate::store::Backend::Sqlite => "sqlite",
            crate::store::Backend::Postgres => "postgres",
        },
        "sessions": state.gateway.sessions.len(),
    }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The authenticated caller, put in the request by `authenticate`:
/// everything about who calls comes from the credential, nothing from the
/// request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (shown in audit and as requestor).
    pub name: String,
    pub role: Role,
    pub token_id: String,
    /// `user:alice` — the person (or integration) the token speaks for.
    pub identity: String,
    pub kind: TokenKind,
}

impl Caller {
    /// The caller as the action center knows it.
    pub fn requestor(&self) -> crate::actions::Requestor<'_> {
        crate::actions::Requestor {
            name: &self.name,
            role: self.role,
            identity: &self.identity,
            integration: self.kind == TokenKind::Integration,
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this call needs the {} role; token {:?} has {}",
                role.as_str(),
                self.name,
                self.role.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// Extra detail a handler adds to its audit entry (never secrets).
#[derive(Clone)]
pub struct AuditDetail(pub String);

/// What `authenticate` needs: the state and the role of every route.
#[derive(Clone)]
struct Guard {
    state: AppState,
    roles: Arc<openapi::Roles>,
}

async fn authenticate(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let state = &guard.state;
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let needed = guard.roles.get(req.method(), &route);
    if needed.is_none() {
        // A method the route does not have: 405, listing those it has.
        let allow = guard.roles.methods(&route);
        if !allow.is_empty() {
            let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
            if let Ok(v) = allow.join(", ").parse() {
                response.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return response;
        }
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let method = req.method().to_string();
    // The full path, not the one relative to the nested /api/v1 router.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let caller = match bearer {
        None => Err(ApiError::Unauthorized),
        Some(secret) => match state.store.api_token_by_secret(&secret).await {
            Ok(Some(t)) => {
                Ok(Caller { identity: t.identity(), name: t.name, role: t.role, token_id: t.id, kind: t.kind })
            }
            Ok(None) => Err(ApiError::Unauthorized),
            Err(e) => Err(ApiError::internal(e)),
        },
    };
    let (actor, response) = match caller {
        Ok(caller) => {
            let actor = caller.name.clone();
            // Fail closed: a route this table does not know is refused.
            let allowed = match needed {
                Some(role) => caller.require(role),
                None => {
                    tracing::error!(%method, %path, "no role is declared for this route; refused");
                    Err(ApiError::Forbidden("this route declares no role".into()))
                }
            };
            match allowed {
                Ok(()) => {
                    req.extensions_mut().insert(caller);
                    (actor, next.run(req).await)
                }
                Err(e) => (actor, e.into_response()),
            }
        }
        Err(ApiError::Unauthorized) => {
            // Counted, not audited: anyone on the network could fill the
            // audit trail with refused requests.
            state.metrics.unauthenticated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return ApiError::Unauthorized.into_response();
        }
        Err(e) => ("unauthenticated".to_string(), e.into_response()),
    };
    if mutating {
        let detail = response.extensions().get::<AuditDetail>().map(|d| d.0.clone()).unwrap_or_default();
        let status = response.status();
        let result = if status.is_success() { "ok".to_string() } else { format!("{}", status.as_u16()) };
        let entry = NewAudit { actor: &actor, action: &method, target: &path, result: &result, detail: &detail };
        if let Err(error) = state.store.audit(&entry).await {
            tracing::error!(%error, "could not write audit entry");
        }
    }
    response
}

/// `{"items": [...], "next_cursor": …}`.
pub fn page<T: serde::Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": items, "next_cursor": next_cursor }))
}

/// 201 Created with a JSON body.
pub fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}
