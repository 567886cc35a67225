//! Alerts and investigations: the lists, one alert (paths, history,
//! investigations; status and classification), one investigation
//! (subject, evidence with verdicts, its actions, timeline; terminate,
//! approve an expansion).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use picket_common::detection::Severity;
use serde::Deserialize;
use uuid::Uuid;

use super::actions::refusal;
use super::{audit, changing, db_error, forbidden, layout, page, signed_in, url_encode, Operator};
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::store::{AlertFilter, AlertStatus, Role, StoreError};

const PAGE: u32 = 50;
const ALERT_STATUSES: [&str; 3] = ["new", "in_progress", "resolved"];
/// The list's status filter: open (not resolved) and each status.
const ALERT_FILTERS: [&str; 4] = ["open", "new", "in_progress", "resolved"];
const SEVERITIES: [&str; 3] = ["malicious", "suspicious", "informational"];
const INVESTIGATION_STATUSES: [&str; 6] =
    ["running", "pending_approval", "remediated", "partially_remediated", "no_threats_found", "terminated_by_user"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AlertQuery {
    status: String,
    severity: String,
    device: String,
    sha256: String,
    cursor: String,
}

fn choose(name: &str, label: &str, current: &str, values: &[&str]) -> Markup {
    html! {
        label for=(name) {
            (label)
            select id=(name) name=(name) {
                option value="" { "Any" }
                @for v in values { option value=(v) selected[*v == current] { (v.replace('_', " ")) } }
            }
        }
    }
}

fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge {text}")) { (text.replace('_', " ")) } }
}

/// Host name of `device`, or a note that it is gone.
async fn hostname(state: &AppState, device: Uuid) -> Result<String, StoreError> {
    Ok(state.store.device(device).await?.map(|d| d.hostname).unwrap_or_else(|| "(gone)".into()))
}

/// `GET /alerts`: most recently seen first, filtered, 50 a page.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<AlertQuery>) -> Response {
    let op = match signed_in(&state, &headers, "/alerts").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let filter = AlertFilter {
        status: AlertStatus::parse(&q.status),
        open: q.status == "open",
        severity: Severity::parse(&q.severity),
        device: q.device.parse().ok(),
        sha256: Some(q.sha256.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()),
    };
    let cursor = (!q.cursor.is_empty()).then_some(q.cursor.as_str());
    let loaded = async {
        let found = state.store.alerts(&filter, cursor, PAGE).await?;
        let ids: Vec<Uuid> = found.items.iter().map(|a| a.device_id).collect();
        let known = state.store.device_names(&ids).await?;
        let names: Vec<String> =
            ids.iter().map(|id| known.get(id).cloned().unwrap_or_else(|| "(gone)".into())).collect();
        Ok::<_, StoreError>((found, names))
    };
    let (found, names) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("alert list", e),
    };
    let link = |cursor: &str| {
        format!(
            "/alerts?status={}&severity={}&device={}&sha256={}&cursor={}",
            url_encode(&q.status),
            url_encode(&q.severity),
            url_encode(&q.device),
            url_encode(&q.sha256),
            url_encode(cursor)
        )
    };
    let body = html! {
        h1 { "Alerts" }
        form.filters method="get" action="/alerts" {
            (choose("status", "Status", &q.status, &ALERT_FILTERS))
            (choose("severity", "Severity", &q.severity, &SEVERITIES))
            label for="device" { "Device id" input #device name="device" type="text" value=(q.device) size="36"; }
            label for="sha256" { "File SHA-256" input #sha256 name="sha256" type="text" value=(q.sha256) size="64"; }
            button type="submit" { "Apply" }
        }
        section #live data-live {
            @if found.items.is_empty() { p { "No alerts match." } } @else {
                table.list {
                    thead { tr { th { "Last seen" } th { "Severity" } th { "Rule" } th { "Device" } th { "File" } th { "Status" } th { "Reports" } } }
                    tbody {
                        @for (a, name) in found.items.iter().zip(&names) {
                            tr {
                                td { a href=(format!("/alerts/{}", a.id)) { (rfc3339(a.last_seen)) } }
                                td { (badge(a.severity.as_str())) }
                                td { (a.rule) }
                                td { a href=(format!("/devices/{}", a.device_id)) { (name) } }
                                td { code { (a.path) } }
                                td { (badge(a.status.as_str())) }
                                td { (a.count) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if cursor.is_some() { a href=(link("")) { "← Newest" } }
            @if let Some(next) = &found.next_cursor { a rel="next" href=(link(next)) { "Older →" } }
        }
    };
    page(StatusCode::OK, layout("Alerts", Some(&op), &op.csrf_token, body))
}

/// `GET /alerts/{id}`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, &format!("/alerts/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    alert_page(&state, &op, &raw, None).await
}

fn missing(op: &Operator, what: &str, back: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        layout(
            &format!("No such {what}"),
            Some(op),
            &op.csrf_token,
            html! { h1 { "No such " (what) } p { a href=(back) { "Back to the list" } } },
        ),
    )
}

/// A form that posts `fields` and a comment to `to`.
fn post_form(op: &Operator, to: &str, id: &str, fields: Markup, button: &str) -> Markup {
    html! {
        form.decide method="post" action=(to) {
            input type="hidden" name="csrf_token" value=(op.csrf_token);
            (fields)
            label for=(id) { "Comment" }
            input id=(id) name="comment" type="text" placeholder="why";
            button type="submit" { (button) }
        }
    }
}

async fn alert_page(state: &AppState, op: &Operator, raw: &str, notice: Option<(StatusCode, String)>) -> Response {
    let Ok(id) = raw.parse::<Uuid>() else { return missing(op, "alert", "/alerts") };
    let loaded = async {
        let Some(a) = state.store.alert(id).await? else { return Ok(None) };
        let history = state.store.alert_history(id).await?;
        let paths = state.store.alert_paths(id).await?;
        let investigations = state.store.investigations_of_alert(id).await?;
        let classification = state.store.alert_classification(id).await?;
        let host = hostname(state, a.device_id).await?;
        Ok::<_, StoreError>(Some((a, history, paths, investigations, classification, host)))
    };
    let (a, history, paths, investigations, classification, host) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return missing(op, "alert", "/alerts"),
        Err(e) => return db_error("alert page", e),
    };
    let mut classes = vec![("true_positive", "True positive"), ("informational", "Informational")];
    if op.can(Role::Approver) {
        classes.push(("false_positive", "False positive (undoes its actions, allows the file)"));
    }
    let body = html! {
        p { a href="/alerts" { "← Alerts" } }
        h1 { (a.rule) " on " (host) " " (badge(a.severity.as_str())) }
        @if let Some((s, text)) = &notice {
            @if *s == StatusCode::OK { p.notice role="status" { (text) } } @else { p.error role="alert" { (text) } }
        }
        dl.facts {
            dt { "Status" } dd { (badge(a.status.as_str())) }
            dt { "Classification" } dd { (classification.as_deref().unwrap_or("not classified")) }
            dt { "Device" } dd { a href=(format!("/devices/{}", a.device_id)) { (host) } }
            dt { "File" } dd { code { (a.path) } " (" (a.size) " bytes)" }
            dt { "SHA-256" } dd { code { (a.sha256) } }
            dt { "Rule" } dd { (a.namespace) " / " (a.rule) }
            dt { "Raised by" } dd { (a.source) }
            dt { "Reports" } dd { (a.count) }
            dt { "First seen" } dd { (rfc3339(a.first_seen)) }
            dt { "Last seen" } dd { (rfc3339(a.last_seen)) }
        }
        @if op.can(Role::Responder) {
            h2 { "Triage" }
            div.decisions {
                (post_form(op, &format!("/alerts/{id}/status"), "status-comment", html! {
                    label for="alert-status" { "Status" }
                    select #alert-status name="status" {
                        @for s in ALERT_STATUSES { option value=(s) selected[s == a.status.as_str()] { (s.replace('_', " ")) } }
                    }
                }, "Set status"))
                (post_form(op, &format!("/alerts/{id}/classify"), "classify-comment", html! {
                    label for="classification" { "Classification" }
                    select #classification name="classification" {
                        @for (value, text) in &classes { option value=(value) { (text) } }
                    }
                }, "Classify"))
            }
        }
        h2 { "Paths" }
        table.list {
            thead { tr { th { "Path" } th { "First seen" } th { "Last seen" } th { "Investigation" } } }
            tbody { @for p in &paths { tr {
                td { code { (p.path) } }
                td { (rfc3339(p.first_seen)) }
                td { (rfc3339(p.last_seen)) }
                td { @if let Some(i) = &p.investigation_id { a href=(format!("/investigations/{i}")) { "open" } } }
            } } }
        }
        h2 { "Investigations" }
        @if investigations.is_empty() { p { "None." } }
        ul { @for i in &investigations { li { a href=(format!("/investigations/{}", i.id)) { (i.title) } " " (badge(&i.status)) } } }
        h2 { "History" }
        table.list {
            thead { tr { th { "When" } th { "Event" } th { "Status" } th { "By" } th { "Comment" } } }
            tbody { @for e in &history { tr {
                td { (rfc3339(e.at)) } td { (e.kind) } td { (e.status) } td { (e.actor) } td { (e.comment) }
            } } }
        }
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    page(status, layout(&format!("Alert {}", a.rule), Some(op), &op.csrf_token, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TriageForm {
    csrf_token: String,
    comment: String,
    status: String,
    classification: String,
}

/// `POST /alerts/{id}/status` and `/alerts/{id}/classify` (responder;
/// a false positive needs an approver, checked by the investigations
/// service).
pub async fn triage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((raw, what)): Path<(String, String)>,
    Form(form): Form<TriageForm>,
) -> Response {
    let op = match changing(&state, &headers, &format!("/alerts/{}", url_encode(&raw)), &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let Ok(id) = raw.parse::<Uuid>() else { return missing(&op, "alert", "/alerts") };
    let target = format!("/alerts/{id}/{what}");
    if !op.can(Role::Responder) {
        audit(&state.store, &op.user, "POST", &target, "403", "needs the responder role").await;
        return forbidden("Triage needs the responder role.");
    }
    let caller = op.caller();
    let done: Result<String, (StatusCode, String)> = match what.as_str() {
        "status" => match AlertStatus::parse(&form.status) {
            None => Err((StatusCode::BAD_REQUEST, "Status: new, in progress or resolved.".into())),
            Some(s) => match state.store.set_alert_status(id, s, &op.user, &form.comment).await {
                Ok(Some(_)) => Ok(format!("Status set to {}.", s.as_str().replace('_', " "))),
                Ok(None) => return missing(&op, "alert", "/alerts"),
                Err(e) => return db_error("alert status", e),
            },
        },
        "classify" => state
            .investigations
            .classify(id, &form.classification, &caller.requestor(), &form.comment)
            .await
            .map(|_| format!("Classified {}.", form.classification.replace('_', " ")))
            .map_err(|e| refusal(&e)),
        _ => return missing(&op, "page", &format!("/alerts/{id}")),
    };
    let (status, message) = match done {
        Ok(m) => (StatusCode::OK, m),
        Err(e) => e,
    };
    let result = if status == StatusCode::OK { "ok" } else { status.as_str() };
    audit(&state.store, &op.user, "POST", &target, result, &message).await;
    alert_page(&state, &op, &raw, Some((status, message))).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InvestigationQuery {
    status: String,
    device: String,
}

/// `GET /investigations`: the newest 200, by status and device.
pub async fn investigations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<InvestigationQuery>,
) -> Response {
    let op = match signed_in(&state, &headers, "/investigations").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let status = INVESTIGATION_STATUSES.iter().find(|s| **s == q.status).copied();
    let loaded = async {
        let found = state.store.investigations(status, q.device.parse().ok(), 200).await?;
        let ids: Vec<Uuid> = found.iter().map(|i| i.device_id).collect();
        let known = state.store.device_names(&ids).await?;
        let names: Vec<String> =
            ids.iter().map(|id| known.get(id).cloned().unwrap_or_else(|| "(gone)".into())).collect();
        Ok::<_, StoreError>((found, names))
    };
    let (found, names) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("investigation list", e),
    };
    let body = html! {
        h1 { "Investigations" }
        form.filters method="get" action="/investigations" {
            (choose("status", "Status", &q.status, &INVESTIGATION_STATUSES))
            label for="device" { "Device id" input #device name="device" type="text" value=(q.device) size="36"; }
            button type="submit" { "Apply" }
        }
        section #live data-live {
            @if found.is_empty() { p { "No investigations match." } } @else {
                table.list {
                    thead { tr { th { "Started" } th { "Title" } th { "Device" } th { "Status" } th { "By" } } }
                    tbody {
                        @for (i, name) in found.iter().zip(&names) {
                            tr {
                                td { (rfc3339(i.created_at)) }
                                td { a href=(format!("/investigations/{}", i.id)) { (i.title) } }
                                td { a href=(format!("/devices/{}", i.device_id)) { (name) } }
                                td { (badge(&i.status)) }
                                td { (i.created_by) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, layout("Investigations", Some(&op), &op.csrf_token, body))
}

/// Each entity of the evidence with its verdict, then what was decided.
fn evidence_table(evidence: &serde_json::Value) -> Markup {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let items = evidence["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let remediation = evidence["remediation"].as_array().map(Vec::as_slice).unwrap_or_default();
    html! {
        @if !items.is_empty() { table.list {
            thead { tr { th { "Entity" } th { "What" } th { "Verdict" } th { "Why, and what was done" } } }
            tbody { @for item in items { tr {
                td { (text(&item["type"])) }
                td {
                    @if let Some(pid) = item["pid"].as_u64() { "PID " (pid) " " }
                    code { (text(&item["path"])) (text(&item["executable"])) (text(&item["what"])) (text(&item["url"])) }
                    @if let (Some(user), Some(mailbox)) = (item["user"].as_str(), item["mailbox"].as_str()) {
                        (user) " / " (mailbox) " · " (text(&item["subject"])) br; span.hint { "from " (text(&item["from"])) }
                    } @else if let Some(from) = item["from"].as_str() {
                        code { (from) } @if item["external"] == true { " (outside)" }
                    }
                    @if let Some(names) = item["names"].as_array() {
                        (names.iter().map(text).collect::<Vec<_>>().join(", "))
                    }
                    @if let Some(sha) = item["sha256"].as_str() { br; span.hint { "SHA-256 " (sha) } }
                    @if let Some(n) = item["clicks"].as_u64().filter(|n| *n > 0) {
                        br; span.hint { "clicked " (n) " times by " (text(&item["clicked_by"]).trim_matches(['[', ']']).replace('"', "")) }
                    }
                }
                td { (badge(&text(&item["verdict"]))) }
                td { (text(&item["why"])) @if item["remediation"].is_string() { " " (text(&item["remediation"])) } }
            } } }
        } }
        @if !remediation.is_empty() {
            h3 { "Remediation decided" }
            table.list {
                thead { tr { th { "Action" } th { "Path" } th { "Decision" } th {} } }
                tbody { @for r in remediation { tr {
                    td { (text(&r["kind"])) } td { code { (text(&r["path"])) (text(&r["url"])) } } td { (text(&r["decision"])) }
                    td { @if let Some(a) = r["action_id"].as_str() { a href=(format!("/actions/{a}")) { "the action" } } }
                } } }
            }
        }
    }
}

/// `GET /investigations/{id}`.
pub async fn investigation(State(state): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, &format!("/investigations/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    investigation_page(&state, &op, &raw, None).await
}

async fn investigation_page(
    state: &AppState,
    op: &Operator,
    raw: &str,
    notice: Option<(StatusCode, String)>,
) -> Response {
    let Ok(id) = raw.parse::<Uuid>() else { return missing(op, "investigation", "/investigations") };
    let loaded = async {
        let Some(i) = state.store.investigation(id).await? else { return Ok(None) };
        let actions = state.store.investigation_actions(id).await?;
        let events = state.store.investigation_events(id).await?;
        let host = hostname(state, i.device_id).await?;
        Ok::<_, StoreError>(Some((i, actions, events, host)))
    };
    let (i, actions, events, host) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return missing(op, "investigation", "/investigations"),
        Err(e) => return db_error("investigation page", e),
    };
    let live = i.status == "running" || i.status == "pending_approval";
    let expansion = i.evidence["expansion"]["status"] == "pending_approval";
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        p { a href="/investigations" { "← Investigations" } }
        h1 { (i.title) " " (badge(&i.status)) }
        nav.tabs aria-label="Investigation" {
            a href="#evidence" { "Evidence" }
            @if i.alert_id.is_some() { a href="#alert" { "Alert" } }
            a href="#actions" { "Actions" }
            a href="#log" { "Log" }
        }
        @if let Some((s, text)) = &notice {
            @if *s == StatusCode::OK { p.notice role="status" { (text) } } @else { p.error role="alert" { (text) } }
        }
        section #live data-live {
            dl.facts {
                dt { "Device" } dd { a href=(format!("/devices/{}", i.device_id)) { (host) } }
                @if let Some(alert) = &i.alert_id { dt #alert { "Alert" } dd { a href=(format!("/alerts/{alert}")) { (alert) } } }
                dt { "Started by" } dd { (i.created_by) }
                dt { "Started" } dd { (rfc3339(i.created_at)) }
                dt { "Updated" } dd { (rfc3339(i.updated_at)) }
                dt { "Subject" } dd { pre { (pretty(&i.subject)) } }
            }
            h2 #evidence { "Evidence and verdicts" }
            @if i.evidence.is_null() { p { "Not evaluated yet." } } @else {
                @if let Some(e) = i.evidence["evidence_error"].as_str() { p.error { "Evidence could not be collected: " (e) } }
                (evidence_table(&i.evidence))
                details { summary { "All evidence as recorded (JSON)" } pre.evidence { (pretty(&i.evidence)) } }
            }
            h2 #actions { "Proposed and taken actions" }
            @if actions.is_empty() { p { "None." } }
            @if !actions.is_empty() { table.list {
                thead { tr { th { "Requested" } th { "Action" } th { "Status" } th { "By" } th { "Comment" } th {} } }
                tbody { @for a in &actions { tr {
                    td { (rfc3339(a.created_at)) }
                    td { a href=(format!("/actions/{}", a.id)) { (a.kind.as_str()) } }
                    td { (badge(a.status.as_str())) }
                    td { (a.requestor) }
                    td { (a.comment) }
                    td.row-actions {
                        @if a.status == crate::store::ActionStatus::PendingApproval && op.can(Role::Approver)
                            && a.requestor_identity != op.caller().identity {
                            @for (verb, label) in [("approve", "Approve"), ("reject", "Reject")] {
                                form.inline method="post" action=(format!("/actions/{}/{verb}", a.id)) {
                                    input type="hidden" name="csrf_token" value=(op.csrf_token);
                                    input type="hidden" name="back" value=(format!("/investigations/{id}"));
                                    button type="submit" { (label) }
                                }
                            }
                        }
                    }
                } } }
            } }
            h2 #log { "Log" }
            table.list {
                thead { tr { th { "When" } th { "Event" } th { "By" } th { "Detail" } } }
                tbody { @for e in &events { tr { td { (rfc3339(e.at)) } td { (e.event) } td { (e.actor) } td { (e.detail) } } } }
            }
        }
        @if live && op.can(Role::Responder) {
            h2 { "Terminate" }
            (post_form(op, &format!("/investigations/{id}/terminate"), "terminate-comment", html! {}, "Terminate investigation"))
        }
        @if expansion && op.can(Role::Approver) {
            h2 { "Expansion" }
            p { "The same file was found on other devices; investigating them waits for an approver." }
            (post_form(op, &format!("/investigations/{id}/approve-expansion"), "expand-comment", html! {}, "Approve expansion"))
        }
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    page(status, layout(&i.title, Some(op), &op.csrf_token, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionForm {
    csrf_token: String,
    comment: String,
}

/// `POST /investigations/{id}/terminate` and `/approve-expansion`.
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((raw, what)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let op = match changing(&state, &headers, &format!("/investigations/{}", url_encode(&raw)), &form.csrf_token).await
    {
        Ok(op) => op,
        Err(r) => return r,
    };
    let target = format!("/investigations/{}/{what}", url_encode(&raw));
    if !op.can(Role::Responder) {
        audit(&state.store, &op.user, "POST", &target, "403", "needs the responder role").await;
        return forbidden("Deciding investigations needs the responder role (an expansion, the approver role).");
    }
    let Ok(id) = raw.parse::<Uuid>() else { return missing(&op, "investigation", "/investigations") };
    let caller = op.caller();
    let who = caller.requestor();
    let outcome = match what.as_str() {
        "terminate" => state.investigations.terminate(id, &who, &form.comment).await,
        "approve-expansion" => state.investigations.approve_expansion(id, &who).await,
        _ => return missing(&op, "page", &format!("/investigations/{id}")),
    };
    match outcome {
        Ok(_) => {
            audit(&state.store, &op.user, "POST", &target, "ok", "via console").await;
            Redirect::to(&format!("/investigations/{id}")).into_response()
        }
        Err(e) => {
            let (status, message) = refusal(&e);
            audit(&state.store, &op.user, "POST", &target, status.as_str(), &message).await;
            investigation_page(&state, &op, &raw, Some((status, message))).await
        }
    }
}
