//! `/audit`: the trail of mutating calls.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::{page, ApiError, AppState, Caller, ListQuery, Params};
use crate::clock::rfc3339;
use crate::store::Role;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("bad cursor {c:?}")))?),
    };
    let found = state.store.audit_entries(cursor, q.limit()?).await?;
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
