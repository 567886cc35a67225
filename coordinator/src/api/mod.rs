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
mod groups;
mod investigations;
mod metrics;
mod openapi;
pub mod range;
mod samples;
pub mod server;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The API: every route comes from a handler's `#[utoipa::path]`, which
/// also gives its OpenAPI entry and, as the security scope, the least role
/// that may call it. [`openapi::Roles`] reads the roles back from the
/// document and `authenticate` enforces them for every route, so a route
/// cannot exist without its role and its spec entry: a route without a
/// role makes this function fail, and the coordinator with it, at start.
pub fn router(state: AppState) -> Result<Router, String> {
    let upload_limit = DefaultBodyLimit::max(state.rules.max_bundle_bytes * 2 + 64 * 1024);
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
        // JSON escaping can double the source; the handler enforces the real cap.
        .routes((rules_schemas, rules_paths, rules_route.layer(upload_limit)))
        .routes(routes!(content::add_indicator, content::list_indicators))
        .routes(routes!(content::delete_indicator))
        .routes(routes!(samples::list))
        .routes(routes!(samples::download))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::show_alert, alerts::update_alert))
        .routes(routes!(alerts::classify));
    let roles = Arc::new(openapi::Roles::of(v1.get_openapi())?);
    let guard = Guard { state: state.clone(), roles };
    let v1 = v1.route_layer(middleware::from_fn_with_state(guard, authenticate));
    let public = OpenApiRouter::<AppState>::new()
        .routes(routes!(health))
        .routes(routes!(openapi::spec))
        .routes(routes!(metrics::metrics));
    openapi::Roles::check_public(public.get_openapi())?;
    let (app, document) = OpenApiRouter::with_openapi(openapi::base()).merge(public).merge(v1).split_for_parts();
    let document = Arc::new(openapi::finish(document)?);
    Ok(app
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

/// A JSON object request body (`Content-Type: application/json`), whose
/// rejection is an [`ApiError`] (400 with the reason). Two things plain
/// `Json<T>` would do differently, to match what the schemas promise:
/// a JSON array is refused even where serde could read a struct from it,
/// and a whole number written with a fraction (`24.0`, which JSON Schema
/// calls an integer) is read as that integer.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        if !value.is_object() {
            return Err(ApiError::BadRequest("the request body must be a JSON object".into()));
        }
        whole_numbers(&mut value);
        serde_json::from_value(value).map(Body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
    }
}

/// Turn every whole float in `v` (`24.0`) into an integer.
fn whole_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Exactly representable and in range: 2^63 bounds both casts.
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                *v = if f < 0.0 { Value::from(f as i64) } else { Value::from(f as u64) };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
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

/// `?limit=&cursor=` of a list ordered by id: the cursor is the last id
/// of the previous page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IdPage {
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<uuid::Uuid>,
}

impl IdPage {
    pub fn limit(&self) -> Result<u32, ApiError> {
        page_limit(self.limit)
    }

    pub fn cursor(&self) -> Option<String> {
        self.cursor.map(|c| c.to_string())
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

/// The `time:id` cursor of a newest-first list (`next_cursor` of the
/// previous page): milliseconds, a colon, a lower-case UUID.
#[derive(Debug, Clone)]
pub struct TimeCursor(pub String);

impl TimeCursor {
    fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once(':')?;
        let digits = !at.is_empty() && at.len() <= 18 && at.bytes().all(|b| b.is_ascii_digit());
        let id_ok = id.parse::<uuid::Uuid>().is_ok_and(|u| u.hyphenated().to_string() == id);
        (digits && id_ok).then(|| Self(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for TimeCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("cursor: use next_cursor of the previous page"))
    }
}

impl utoipa::PartialSchema for TimeCursor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[0-9]{1,18}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"))
            .description(Some("next_cursor of the previous page"))
            .into()
    }
}

impl utoipa::ToSchema for TimeCursor {}

/// The one parameter of a route's path, as text.
async fn path_param<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    Ok(raw)
}

/// A UUID in a path (`/actions/{id}`), in its 36-character form.
pub struct Id(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, state).await?;
        match raw.parse::<uuid::Uuid>() {
            Ok(id) if raw.len() == 36 => Ok(Id(id)),
            _ => Err(ApiError::BadRequest(format!("{raw:?} is not an id (UUID)"))),
        }
    }
}

/// A SHA-256 in a path, either case; lower-cased.
pub struct Sha256Path(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Sha256Path {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, state).await?;
        let sha256 = raw.to_ascii_lowercase();
        if picket_common::detection::is_sha256_hex(&sha256) {
            Ok(Self(sha256))
        } else {
            Err(ApiError::BadRequest(format!("{raw:?} is not a SHA-256 (64 hex digits)")))
        }
    }
}

/// `{"items": [...], "next_cursor": …}`.
pub fn page<T: serde::Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": items, "next_cursor": next_cursor }))
}

/// 201 Created with a JSON body.
pub fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}
