//! `/rules` and `/indicators`: the detection content agents scan with.

use std::collections::HashSet;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picket_common::detection::{
    bundle_version, is_sha256_hex, valid_rule_file_name, IndicatorAction, RuleBundle, RuleFile,
};
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa::{IntoParams, ToSchema};

use super::{created, ApiError, AppState, AuditDetail, Body, Caller, Params, Sha256Path};
use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::content::checker::{self, CheckError};
use crate::store::{Indicator, NewBundle};

/// Where uploads are checked, and how big they may be.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    pub checker: std::path::PathBuf,
    pub scratch: std::path::PathBuf,
    pub max_bundle_bytes: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRules {
    /// The bundle's files, each name once.
    #[schema(min_items = 1)]
    files: Vec<RuleFile>,
}

/// Upload a rule bundle.
///
/// Each file is compiled as agents will; the bundle is stored and pushed
/// to every agent if at least one file compiled.
#[utoipa::path(post, path = "/api/v1/rules", tag = "content", security(("bearer" = ["admin"])),
    request_body = UploadRules,
    responses((status = 201, description = "The bundle is stored and pushed; `errors` lists files that did not compile", body = Object),
              (status = 422, description = "No file compiled, or a name appears twice; nothing was stored")))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UploadRules>,
) -> Result<Response, ApiError> {
    let (answer, detail) = activate_bundle(&state, &caller.name, &body.files).await?;
    let mut response = created(answer);
    response.extensions_mut().insert(AuditDetail(detail));
    Ok(response)
}

/// Checks a bundle's files as agents will compile them, stores the files
/// that compiled and pushes them to every agent (the API's upload and the
/// console's). The answer (version, files, rules, per-file errors) and an
/// audit line.
pub async fn activate_bundle(state: &AppState, by: &str, files: &[RuleFile]) -> Result<(Value, String), ApiError> {
    if files.is_empty() {
        return Err(ApiError::BadRequest("a bundle needs at least one rule file".into()));
    }
    let mut names = HashSet::new();
    let mut total = 0usize;
    for f in files {
        if !valid_rule_file_name(&f.name) {
            return Err(ApiError::BadRequest(format!(
                "file name {:?}: use letters, digits, '.', '_' and '-', ending in .yar or .yara",
                f.name
            )));
        }
        if !names.insert(f.name.as_str()) {
            return Err(ApiError::Unprocessable {
                message: format!("file {:?} appears twice", f.name),
                details: json!([{ "file": f.name, "error": "appears twice" }]),
            });
        }
        total += f.name.len() + f.source.len();
    }
    let max = state.rules.max_bundle_bytes;
    if total > max {
        return Err(ApiError::BadRequest(format!(
            "bundle is {total} bytes; the limit is {max} ([rules] max_bundle_bytes)"
        )));
    }
    let report = match checker::check(&state.rules.checker, &state.rules.scratch, files).await {
        Ok(r) => r,
        Err(e @ CheckError::Missing(_)) => return Err(ApiError::Unavailable(e.to_string())),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let errors = serde_json::to_value(&report.errors).map_err(ApiError::internal)?;
    if report.loaded.is_empty() {
        return Err(ApiError::Unprocessable {
            message: format!("none of the {} files compiled; nothing was stored", files.len()),
            details: errors,
        });
    }
    // Agents get only the files that compiled.
    let loaded: HashSet<&str> = report.loaded.iter().map(String::as_str).collect();
    let files: Vec<RuleFile> = files.iter().filter(|f| loaded.contains(f.name.as_str())).cloned().collect();
    let version = bundle_version(&files);
    state
        .store
        .put_bundle(&NewBundle {
            version: &version,
            files: &files,
            rule_count: report.rules,
            severities: &report.severities,
            errors: &errors,
            created_by: by,
        })
        .await?;
    let msg = state
        .gateway
        .content
        .set_rules(RuleBundle { version: version.clone(), files: files.clone() }, report.severities.clone());
    state.gateway.publish(msg);
    tracing::info!(%version, files = files.len(), rejected = report.errors.len(), rules = report.rules, "rule bundle activated");
    let detail = format!("bundle {version}: {} files loaded, {} rejected", files.len(), report.errors.len());
    let answer = json!({
        "version": version,
        "files": files.iter().map(|f| &f.name).collect::<Vec<_>>(),
        "rules": report.rules,
        "errors": errors,
    });
    Ok((answer, detail))
}

/// List rule bundles, the current one first.
#[utoipa::path(get, path = "/api/v1/rules", tag = "content", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Bundles", body = Object)))]
pub async fn list_rules(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let bundles = state.store.bundles().await?;
    let current = bundles.first().map(|b| b.version.clone());
    let items: Vec<Value> = bundles
        .iter()
        .map(|b| {
            json!({
                "version": b.version,
                "current": Some(&b.version) == current.as_ref(),
                "files": b.file_count,
                "rules": b.rule_count,
                "errors": b.errors,
                "created_by": b.created_by,
                "created_at": rfc3339(b.created_at),
                "activated_at": rfc3339(b.activated_at),
            })
        })
        .collect();
    Ok(Json(json!({ "current": current, "items": items })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIndicator {
    /// The file's SHA-256, either case.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: String,
    action: IndicatorAction,
    #[serde(default)]
    #[schema(max_length = 1000)]
    comment: String,
    /// When it stops applying (RFC 3339, in the future); never if left out.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

fn indicator_json(i: &Indicator) -> Value {
    json!({
        "sha256": i.sha256,
        "action": i.action,
        "comment": i.comment,
        "created_by": i.created_by,
        "created_at": rfc3339(i.created_at),
        "expires_at": i.expires_at.map(rfc3339),
    })
}

async fn push_indicators(state: &AppState) -> Result<(), ApiError> {
    if let Some(msg) = state.gateway.content.reload_indicators(&state.store).await? {
        state.gateway.publish(msg);
    }
    Ok(())
}

/// Add or replace a SHA-256 indicator (block or allow).
#[utoipa::path(post, path = "/api/v1/indicators", tag = "content", security(("bearer" = ["approver"])),
    request_body = NewIndicator,
    responses((status = 201, description = "The indicator, pushed to every agent", body = Object),
              (status = 422, description = "expires_at is in the past")))]
pub async fn add_indicator(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewIndicator>,
) -> Result<Response, ApiError> {
    let action = body.action;
    let indicator =
        set_indicator(&state, &caller.name, &body.sha256, action, body.comment, body.expires_at.as_deref()).await?;
    let mut response = created(indicator_json(&indicator));
    response.extensions_mut().insert(AuditDetail(format!("{} {}", action.as_str(), indicator.sha256)));
    Ok(response)
}

/// Adds or replaces the indicator for `sha256` and pushes the set to
/// every agent (the API's and the console's); `expires_at` is RFC 3339
/// and in the future, or none.
pub async fn set_indicator(
    state: &AppState,
    by: &str,
    sha256: &str,
    action: IndicatorAction,
    comment: String,
    expires_at: Option<&str>,
) -> Result<Indicator, ApiError> {
    let sha256 = sha256.trim().to_ascii_lowercase();
    if !is_sha256_hex(&sha256) {
        return Err(ApiError::BadRequest(format!("{sha256:?} is not a SHA-256 (64 hex digits)")));
    }
    let expires_at = match expires_at {
        None => None,
        Some(t) => {
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::BadRequest(format!("expires_at {t:?}: {e} (use RFC 3339)")))?;
            let ms = crate::clock::unix_ms(at);
            if ms <= now_ms() {
                return Err(ApiError::Unprocessable {
                    message: "expires_at is in the past".into(),
                    details: json!({ "expires_at": t }),
                });
            }
            Some(ms)
        }
    };
    if comment.chars().count() > 1000 {
        return Err(ApiError::BadRequest("comment is longer than 1000 characters".into()));
    }
    let indicator = Indicator { sha256, action, comment, created_by: by.to_string(), created_at: now_ms(), expires_at };
    state.store.put_indicator(&indicator).await?;
    push_indicators(state).await?;
    Ok(indicator)
}

/// Deletes the indicator for `sha256` and pushes the set to every agent.
pub async fn remove_indicator(state: &AppState, sha256: &str) -> Result<(), ApiError> {
    if !state.store.delete_indicator(sha256).await? {
        return Err(ApiError::NotFound(format!("no indicator for {sha256}")));
    }
    push_indicators(state).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IndicatorQuery {
    /// Include expired ones too.
    #[serde(default)]
    all: bool,
}

/// List indicators in force (`?all=true`: expired ones too).
#[utoipa::path(get, path = "/api/v1/indicators", tag = "content", security(("bearer" = ["viewer"])),
    params(IndicatorQuery), responses((status = 200, description = "Indicators", body = Object)))]
pub async fn list_indicators(
    State(state): State<AppState>,
    Params(q): Params<IndicatorQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = state.store.indicators(if q.all { None } else { Some(now_ms()) }).await?;
    Ok(Json(json!({
        "version": state.gateway.content.indicators_version(),
        "items": list.iter().map(indicator_json).collect::<Vec<_>>(),
    })))
}

/// Delete an indicator.
#[utoipa::path(delete, path = "/api/v1/indicators/{sha256}", tag = "content", security(("bearer" = ["approver"])),
    params(("sha256" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "The file's SHA-256")),
    responses((status = 200, description = "Deleted", body = Object)))]
pub async fn delete_indicator(
    State(state): State<AppState>,
    Sha256Path(sha256): Sha256Path,
) -> Result<Response, ApiError> {
    remove_indicator(&state, &sha256).await?;
    Ok(Json(json!({ "deleted": sha256 })).into_response())
}
