//! What handlers take from a request — JSON bodies, queries, path ids,
//! pages and cursors — each refusing bad input with an [`ApiError`] (400
//! and the reason) and each describing itself to the OpenAPI document.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;

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
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(rejection.body_text())
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
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

/// A user name in a path (`/users/{name}`), as [`crate::users::check_name`] allows.
pub struct UserName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, state).await?;
        crate::users::check_name(&raw).map_err(ApiError::BadRequest)?;
        Ok(Self(raw))
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
