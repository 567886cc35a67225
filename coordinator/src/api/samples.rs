//! `/samples`: files collected by `request_sample`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::actions::ActionKind;
use serde_json::{json, Value};

use super::range::parse_range;
use super::{ApiError, AppState, Caller, Id, Sha256Path};
use crate::clock::rfc3339;
use crate::store::Sample;

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

/// List collected samples, the newest 1000.
#[utoipa::path(get, path = "/api/v1/samples", tag = "samples", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Samples", body = Object)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = state.store.samples(1000).await?.iter().map(sample_json).collect();
    Ok(Json(json!({ "items": items })))
}

/// Download a sample as a ZIP encrypted with the password `infected`.
///
/// Responder: this hands out malware; each download is audited.
#[utoipa::path(get, path = "/api/v1/samples/{sha256}", tag = "samples", security(("bearer" = ["responder"])),
    params(("sha256" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "The sample's SHA-256")),
    responses((status = 200, description = "The encrypted ZIP", content_type = "application/zip", body = Vec<u8>)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Sha256Path(sha256): Sha256Path,
) -> Result<Response, ApiError> {
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

/// Download the investigation package of a collect_package action.
///
/// `Range: bytes=a-b` (or `a-`, `-n`) answers 206 with that part, so a
/// download can resume.
#[utoipa::path(get, path = "/api/v1/actions/{id}/package", tag = "actions", security(("bearer" = ["responder"])),
    params(("id" = Uuid, Path, description = "Id of a collect_package action"),
           ("Range" = Option<String>, Header, description = "bytes=a-b, a- or -n")),
    responses((status = 200, description = "The package", content_type = "application/gzip", body = Vec<u8>),
              (status = 206, description = "The part the Range asked for", content_type = "application/gzip", body = Vec<u8>),
              (status = 416, description = "The Range is outside the package")))]
pub async fn package(
    State(state): State<AppState>,
    Id(id): Id,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let action = state.store.action(id).await?.ok_or_else(|| ApiError::NotFound(format!("no action {id}")))?;
    if action.kind != ActionKind::CollectPackage {
        return Err(ApiError::NotFound(format!("action {id} is {}: only collect_package has a package", action.kind)));
    }
    let path = state.gateway.uploads.package_path(id);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!(
                "the package of {id} is not here yet (action {})",
                action.status.as_str()
            )))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, size));
    let (status, start, len) = match range {
        None => (axum::http::StatusCode::OK, 0, size),
        Some(Some((a, b))) => (axum::http::StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        Some(None) => {
            let mut r = ApiError::BadRequest(format!("unsatisfiable range for {size} bytes")).into_response();
            *r.status_mut() = axum::http::StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut()
                .insert(header::CONTENT_RANGE, format!("bytes */{size}").parse().map_err(ApiError::internal)?);
            return Ok(r);
        }
    };
    file.seek(std::io::SeekFrom::Start(start)).await.map_err(ApiError::internal)?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"picket-package-{id}.tar.gz\"")),
        ],
        body,
    )
        .into_response();
    if status == axum::http::StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        response.headers_mut().insert(header::CONTENT_RANGE, value.parse().map_err(ApiError::internal)?);
    }
    Ok(response)
}
