//! The REST API under `/api/v1` (axum), one file per resource.
//!
//! Authentication: `Authorization: Bearer <API token>`; roles are ordered
//! viewer < responder < approver < admin. The `authenticate` middleware
//! resolves the caller and writes the audit entry for every mutating call,
//! whatever its outcome. Errors are `{"error":{"code","message"}}`.

mod actions;
mod alerts;
mod api_tokens;
mod audit;
mod content;
mod devices;
mod enrollment_tokens;
mod error;
mod groups;
mod investigations;
mod metrics;
mod openapi;
pub mod range;
mod samples;
pub mod server;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use content::RulesSettings;
pub use error::ApiError;

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
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/devices", get(devices::list))
        .route("/devices/{id}", get(devices::show).patch(groups::update_device))
        .route("/devices/{id}/investigations", post(investigations::start))
        .route("/device-groups", get(groups::list_groups).post(groups::create_group))
        .route("/device-groups/{id}", axum::routing::patch(groups::update_group))
        .route("/investigations", get(investigations::list))
        .route("/investigations/{id}", get(investigations::show))
        .route("/investigations/{id}/terminate", post(investigations::terminate))
        .route("/investigations/{id}/approve-expansion", post(investigations::approve_expansion))
        .route("/devices/{id}/revoke", post(devices::revoke))
        .route("/devices/{id}/actions", post(actions::create))
        .route("/devices/{id}/offboarding-token", post(devices::offboarding_token))
        .route("/actions", get(actions::list))
        .route("/actions.csv", get(actions::export_csv))
        .route("/actions/approve", post(actions::approve_many))
        .route("/actions/{id}", get(actions::show))
        .route("/actions/{id}/approve", post(actions::approve))
        .route("/actions/{id}/reject", post(actions::reject))
        .route("/actions/{id}/cancel", post(actions::cancel))
        .route("/actions/{id}/undo", post(actions::undo))
        .route("/actions/{id}/package", get(samples::package))
        .route("/enrollment-tokens", post(enrollment_tokens::create).get(enrollment_tokens::list))
        .route("/enrollment-tokens/{id}", axum::routing::delete(enrollment_tokens::revoke))
        .route("/enrollment-tokens/{id}/resume", post(enrollment_tokens::resume))
        .route("/api-tokens", post(api_tokens::create).get(api_tokens::list))
        .route("/api-tokens/{id}", axum::routing::delete(api_tokens::revoke))
        .route("/audit", get(audit::list))
        .route(
            "/rules",
            post(content::upload)
                .get(content::list_rules)
                // JSON escaping can double the source; the handler enforces the real cap.
                .layer(DefaultBodyLimit::max(state.rules.max_bundle_bytes * 2 + 64 * 1024)),
        )
        .route("/indicators", post(content::add_indicator).get(content::list_indicators))
        .route("/indicators/{sha256}", axum::routing::delete(content::delete_indicator))
        .route("/samples", get(samples::list))
        .route("/samples/{sha256}", get(samples::download))
        .route("/alerts", get(alerts::list_alerts))
        .route("/alerts/{id}", get(alerts::show_alert).patch(alerts::update_alert))
        .route("/alerts/{id}/classify", post(alerts::classify))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::spec))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn(server::request_timeout))
        .with_state(state)
}

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

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
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
            req.extensions_mut().insert(caller);
            (actor, next.run(req).await)
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

/// `Json` whose rejection is an [`ApiError`] (400 with the reason).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `Query` whose rejection is an [`ApiError`].
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `?limit=&cursor=` of every list endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<u32, ApiError> {
        page_limit(self.limit)
    }
}

/// A list endpoint's `limit`: default 100, at most 1000.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!("limit must be 1..=1000, got {n}"))),
    }
}

/// `{"items": [...], "next_cursor": …}`.
pub fn page<T: serde::Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": items, "next_cursor": next_cursor }))
}

pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::BadRequest(format!("{s:?} is not an id (UUID)")))
}

/// 201 Created with a JSON body.
pub fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}
