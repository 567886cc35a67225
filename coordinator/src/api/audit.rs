//! `/audit`: the trail of mutating calls.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use serde::Deserialize;
use utoipa::IntoParams;

use super::{page, page_limit, ApiError, AppState, Params};
use crate::clock::rfc3339;

/// `?limit=&cursor=` of the audit trail, newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// The audit trail of mutating calls, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = ["admin"])),
    params(AuditPage), responses((status = 200, description = "A page of entries", body = Object)))]
pub async fn list(State(state): State<AppState>, Params(q): Params<AuditPage>) -> Result<Json<Value>, ApiError> {
    let found = state.store.audit_entries(q.cursor, page_limit(q.limit)?).await?;
    let items = found
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": rfc3339(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "result": e.result,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(page::<Value>(items, found.next_cursor))
}
