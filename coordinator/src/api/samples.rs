//! `/samples`: files collected by `request_sample`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::detection::is_sha256_hex;
use serde_json::{json, Value};

use super::{rfc3339, ApiError, AppState, Caller};
use crate::store::{Role, Sample};

fn sample_json(s: &Sample) -> Value {
    json!({
        "sha256": s.sha256,
        "size": s.size,
        "device_id": s.device_id,
        "path": s.path,
        "action_id": s.action_id,
        "collected_at": rfc3339(s.created_at),
        "password": crate::uploads::SAMPLE_PASSWORD,
    })
}

/// `GET /samples`: the newest 1000.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let items: Vec<Value> = state.store.samples(1000).await?.iter().map(sample_json).collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /samples/{sha256}` (responder: this hands out malware): the sample
/// as a ZIP encrypted with the password `infected`.
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Responder)?;
    let sha256 = sha256.to_ascii_lowercase();
    if !is_sha256_hex(&sha256) {
        return Err(ApiError::BadRequest(format!("{sha256:?} is not a SHA-256")));
    }
    if state.store.sample(&sha256).await?.is_none() {
        return Err(ApiError::NotFound(format!("no sample {sha256}")));
    }
    let path = state.gateway.uploads.sample_path(&sha256);
    let file = tokio::fs::File::open(&path).await.map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let response = (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{sha256}.zip\"")),
        ],
        body,
    )
        .into_response();
    // Downloads of malware are audited even though they are reads.
    let entry = crate::store::NewAudit {
        actor: &caller.name,
        action: "GET",
        target: &format!("/api/v1/samples/{sha256}"),
        result: "ok",
        detail: "sample downloaded",
    };
    if let Err(error) = state.store.audit(&entry).await {
        tracing::error!(%error, "could not write audit entry");
    }
    Ok(response)
}
