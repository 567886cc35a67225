//! `/mail/clicks` and `/mail/blocked-urls`: time-of-click protection as
//! operators see it — the click log of wrapped links, and the URLs blocked
//! (each by a `block_url` action; its undo lifts it).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::{ApiError, AppState, Params};
use crate::clock::rfc3339;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClickParams {
    /// Only clicks on this exact link.
    pub url: Option<String>,
    /// Only clicks by this recipient.
    pub recipient: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The click log of wrapped links, newest first: when, which mail host's
/// link, recipient, Message-ID, URL, verdict (`allowed` / `blocked`, with
/// the block) and the clicking client's address.
#[utoipa::path(get, path = "/api/v1/mail/clicks", tag = "mail", security(("bearer" = ["viewer"])),
    params(ClickParams),
    responses((status = 200, description = "Clicks, newest first", body = Object)))]
pub async fn clicks(State(state): State<AppState>, Params(p): Params<ClickParams>) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit is 1..=1000".into()));
    }
    let found = state.store.clicks(p.url.as_deref(), p.recipient.as_deref(), i64::from(limit)).await?;
    let items: Vec<Value> = found
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "at": rfc3339(c.at),
                "device_id": c.device_id,
                "recipient": c.recipient,
                "message_id": c.message_id,
                "url": c.url,
                "verdict": c.verdict,
                "block_id": c.block_id,
                "client": c.client,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// The URLs blocked at time of click, per mail host, with the action that
/// blocked each (undo it to lift the block). Expired blocks are listed
/// with `expired: true` until removed.
#[utoipa::path(get, path = "/api/v1/mail/blocked-urls", tag = "mail", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Blocked URLs", body = Object)))]
pub async fn blocked_urls(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = crate::clock::now_ms();
    let items: Vec<Value> = state
        .store
        .url_blocks()
        .await?
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "device_id": b.device_id,
                "match_type": b.match_kind,
                "value": b.value,
                "comment": b.comment,
                "created_by": b.created_by,
                "created_at": rfc3339(b.created_at),
                "expires_at": b.expires_at.map(rfc3339),
                "expired": b.expires_at.is_some_and(|t| t <= now),
                // A block's id is the id of the block_url action that made it.
                "action_id": b.id,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
