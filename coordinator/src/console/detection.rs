//! Detection content: rule bundles (upload, per-file compile errors) and
//! SHA-256 indicators (block or allow, with expiry). Uploading needs the
//! admin role and indicators the approver role, as in the API.
//!
//! Rule files are uploaded by the console's script: it reads the chosen
//! files and posts them as JSON with the CSRF header (no multipart parser
//! in the coordinator), and shows the compile errors beside the form.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use picket_common::detection::{IndicatorAction, RuleFile};
use serde::Deserialize;
use serde_json::json;

use super::{audit, changing, csrf_ok, db_error, forbidden, layout, page, signed_in, Operator};
use crate::api::{ApiError, AppState};
use crate::clock::{now_ms, rfc3339};
use crate::store::{Role, StoreError};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    uploaded: String,
}

/// `GET /detection`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ShowQuery>) -> Response {
    let op = match signed_in(&state, &headers, "/detection").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let notice = (!q.uploaded.is_empty()).then(|| {
        (StatusCode::OK, html! { p { "Bundle " code { (q.uploaded) } " is active and being pushed to every agent." } })
    });
    detection_page(&state, &op, notice, &IndicatorForm::default()).await
}

fn file_errors(errors: &serde_json::Value) -> Markup {
    html! {
        @if let Some(list) = errors.as_array().filter(|l| !l.is_empty()) {
            ul.errors {
                @for e in list {
                    li { code { (e["file"].as_str().unwrap_or("")) } ": " span.error { (e["error"].as_str().unwrap_or("")) } }
                }
            }
        }
    }
}

async fn detection_page(
    state: &AppState,
    op: &Operator,
    notice: Option<(StatusCode, Markup)>,
    typed: &IndicatorForm,
) -> Response {
    let loaded = async {
        let bundles = state.store.bundles().await?;
        let indicators = state.store.indicators(Some(now_ms())).await?;
        Ok::<_, StoreError>((bundles, indicators))
    };
    let (bundles, indicators) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("detection page", e),
    };
    let field_error = notice.as_ref().filter(|(s, _)| *s != StatusCode::OK).map(|(_, m)| m);
    let body = html! {
        h1 { "Detection" }
        @if let Some((s, message)) = &notice {
            @if *s == StatusCode::OK { div.notice role="status" { (message) } }
        }
        section.panel.wide #rules {
            h2 { "Rule bundles" }
            @if op.can(Role::Admin) {
                form #rules-upload.action-bar method="post" action="/detection/rules" enctype="multipart/form-data" {
                    label for="rule-files" { "YARA files (.yar, .yara)" }
                    input #rule-files name="files" type="file" multiple required accept=".yar,.yara";
                    button type="submit" { "Upload and activate" }
                }
                div #upload-result role="status" aria-live="polite" {}
                p.hint { "Each file is compiled as agents compile it; files that do not compile are left out and listed." }
            }
            @if bundles.is_empty() { p { "No bundle yet: agents scan with the built-in rule only." } }
            @if !bundles.is_empty() { table.list {
                thead { tr { th { "Version" } th { "Files" } th { "Rules" } th { "Uploaded by" } th { "Activated" } th { "Files left out" } } }
                tbody { @for (i, b) in bundles.iter().enumerate() { tr {
                    td { code { (b.version.get(..12).unwrap_or(&b.version)) } @if i == 0 { " " span.badge.active { "current" } } }
                    td { (b.file_count) } td { (b.rule_count) } td { (b.created_by) } td { (rfc3339(b.activated_at)) }
                    td { (file_errors(&b.errors)) }
                } } }
            } }
        }
        section.panel.wide #indicators {
            h2 { "Indicators" }
            p.hint { "Block: any file with this SHA-256 is malicious. Allow: never detected, whatever the rules say." }
            @if indicators.is_empty() { p { "No indicators in force." } }
            @if !indicators.is_empty() { table.list {
                thead { tr { th { "SHA-256" } th { "Action" } th { "Comment" } th { "By" } th { "Added" } th { "Expires" } th {} } }
                tbody { @for i in &indicators { tr {
                    td { code { (i.sha256) } } td { (badge(i.action.as_str())) } td { (i.comment) } td { (i.created_by) }
                    td { (rfc3339(i.created_at)) } td { (i.expires_at.map(rfc3339).unwrap_or_else(|| "never".into())) }
                    td { @if op.can(Role::Approver) {
                        form.inline method="post" action=(format!("/detection/indicators/{}/delete", i.sha256)) {
                            input type="hidden" name="csrf_token" value=(op.csrf_token);
                            button type="submit" { "Remove" }
                        }
                    } }
                } } }
            } }
            @if op.can(Role::Approver) {
                form.action-bar method="post" action="/detection/indicators" {
                    input type="hidden" name="csrf_token" value=(op.csrf_token);
                    label for="ind-sha256" { "SHA-256" }
                    input #ind-sha256 name="sha256" type="text" required size="64" value=(typed.sha256)
                        aria-invalid=[field_error.map(|_| "true")] aria-describedby=[field_error.map(|_| "ind-error")];
                    label for="ind-action" { "Action" }
                    select #ind-action name="action" {
                        option value="block" selected[typed.action != "allow"] { "Block" }
                        option value="allow" selected[typed.action == "allow"] { "Allow" }
                    }
                    label for="ind-comment" { "Comment" }
                    input #ind-comment name="comment" type="text" value=(typed.comment);
                    label for="ind-expires" { "Expires (UTC, optional)" }
                    input #ind-expires name="expires" type="datetime-local" value=(typed.expires);
                    button type="submit" { "Add indicator" }
                }
                @if let Some(m) = field_error { div.error #ind-error role="alert" { (m) } }
            }
        }
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    page(status, layout("Detection", Some(op), &op.csrf_token, body))
}

fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge {text}")) { (text) } }
}

#[derive(Debug, Default, Deserialize)]
pub struct RulesUpload {
    files: Vec<RuleFile>,
}

/// `POST /detection/rules` (JSON from the console's script, CSRF in the
/// header): the API's upload, answered in JSON.
pub async fn upload(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let op = match signed_in(&state, &headers, "/detection").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !csrf_ok(&op, &headers, "") {
        return (StatusCode::FORBIDDEN, Json(json!({ "message": "missing or wrong CSRF token" }))).into_response();
    }
    if !op.can(Role::Admin) {
        audit(&state.store, &op.user, "POST", "/detection/rules", "403", "needs the admin role").await;
        return (StatusCode::FORBIDDEN, Json(json!({ "message": "uploading rules needs the admin role" })))
            .into_response();
    }
    let files = match serde_json::from_slice::<RulesUpload>(&body) {
        Ok(u) => u.files,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "message": format!("not a rule upload: {e}") })))
                .into_response()
        }
    };
    match crate::api::activate_bundle(&state, &op.user, &files).await {
        Ok((answer, detail)) => {
            audit(&state.store, &op.user, "POST", "/detection/rules", "ok", &format!("{detail} via console")).await;
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(e) => {
            let status = e.status();
            audit(&state.store, &op.user, "POST", "/detection/rules", status.as_str(), &e.to_string()).await;
            let details = match &e {
                ApiError::Unprocessable { details, .. } => details.clone(),
                _ => json!([]),
            };
            (status, Json(json!({ "message": e.to_string(), "details": details }))).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IndicatorForm {
    csrf_token: String,
    sha256: String,
    action: String,
    comment: String,
    /// `datetime-local`: `YYYY-MM-DDTHH:MM`, read as UTC; empty: never.
    expires: String,
}

/// `POST /detection/indicators`: add (approver). On a refusal the form
/// comes back with what was typed and the reason beside it.
pub async fn add(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<IndicatorForm>) -> Response {
    let op = match changing(&state, &headers, "/detection", &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Approver) {
        audit(&state.store, &op.user, "POST", "/detection/indicators", "403", "needs the approver role").await;
        return forbidden("Indicators need the approver role.");
    }
    let outcome = match IndicatorAction::parse(&form.action) {
        None => Err(ApiError::BadRequest("action: block or allow".into())),
        Some(action) => {
            let expires = form.expires.trim();
            let expires = match expires.len() {
                0 => None,
                16 => Some(format!("{expires}:00Z")),
                _ => Some(format!("{expires}Z")),
            };
            crate::api::set_indicator(&state, &op.user, &form.sha256, action, form.comment.clone(), expires.as_deref())
                .await
        }
    };
    match outcome {
        Ok(i) => {
            let detail = format!("{} {} via console", i.action.as_str(), i.sha256);
            audit(&state.store, &op.user, "POST", "/detection/indicators", "ok", &detail).await;
            let message = html! { p { (i.action.as_str()) " " code { (i.sha256) } ": pushed to every agent." } };
            detection_page(&state, &op, Some((StatusCode::OK, message)), &IndicatorForm::default()).await
        }
        Err(e) => {
            let status = e.status();
            audit(&state.store, &op.user, "POST", "/detection/indicators", status.as_str(), &e.to_string()).await;
            detection_page(&state, &op, Some((status, html! { (e.to_string()) })), &form).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    csrf_token: String,
}

/// `POST /detection/indicators/{sha256}/delete` (approver).
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let op = match changing(&state, &headers, "/detection", &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let target = "/detection/indicators/delete";
    if !op.can(Role::Approver) {
        audit(&state.store, &op.user, "POST", target, "403", "needs the approver role").await;
        return forbidden("Indicators need the approver role.");
    }
    let sha256 = sha256.to_ascii_lowercase();
    let (status, message) = match crate::api::remove_indicator(&state, &sha256).await {
        Ok(()) => (StatusCode::OK, html! { p { "Indicator for " code { (sha256) } " removed." } }),
        Err(e) => (e.status(), html! { (e.to_string()) }),
    };
    let result = if status == StatusCode::OK { "ok" } else { status.as_str() };
    audit(&state.store, &op.user, "POST", target, result, &format!("{sha256} via console")).await;
    detection_page(&state, &op, Some((status, message)), &IndicatorForm::default()).await
}
