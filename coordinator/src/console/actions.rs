//! The action center: pending approvals and history, one action with its
//! timeline, and the decisions (approve, reject, cancel, undo; several at
//! once from the pending list). Every decision goes through
//! [`crate::actions::ActionCenter`] as the signed-in person, so roles and
//! the two-person rule are checked exactly as for the API.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use picket_common::actions::ActionKind;
use serde::Deserialize;
use uuid::Uuid;

use super::{audit, changing, db_error, forbidden, layout, page, signed_in, url_encode, Operator};
use crate::actions::ActionError;
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::store::{Action, ActionFilter, ActionSource, ActionStatus, Role};

/// Rows a page shows.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// `pending` (default) or `history`.
    tab: String,
    kind: String,
    status: String,
    source: String,
    device: String,
    /// `1d`, `7d`, `30d` or `180d`: requested within that many days.
    period: String,
    cursor: String,
    done: String,
}

/// The time filters offered, as (value, days, label).
const PERIODS: [(&str, i64, &str); 4] =
    [("1d", 1, "1 day"), ("7d", 7, "7 days"), ("30d", 30, "30 days"), ("180d", 180, "6 months")];

impl ListQuery {
    fn pending(&self) -> bool {
        self.tab != "history"
    }

    fn filter(&self) -> ActionFilter {
        let statuses = if self.pending() {
            vec![ActionStatus::PendingApproval]
        } else if let Some(s) = ActionStatus::parse(&self.status) {
            vec![s]
        } else {
            ActionStatus::ALL.into_iter().filter(|s| *s != ActionStatus::PendingApproval).collect()
        };
        ActionFilter {
            statuses,
            kind: ActionKind::ALL.into_iter().find(|k| k.as_str() == self.kind),
            source: ActionSource::parse(&self.source),
            device: self.device.parse().ok(),
            since: PERIODS
                .iter()
                .find(|(v, _, _)| *v == self.period)
                .map(|(_, days, _)| crate::clock::now_ms() - days * 86_400_000),
            ..ActionFilter::default()
        }
    }

    /// This list's URL with another cursor (empty: the first page).
    fn link(&self, cursor: &str) -> String {
        let mut url = format!(
            "/actions?tab={}&kind={}&status={}&source={}&device={}&period={}",
            if self.pending() { "pending" } else { "history" },
            url_encode(&self.kind),
            url_encode(&self.status),
            url_encode(&self.source),
            url_encode(&self.device),
            url_encode(&self.period),
        );
        if !cursor.is_empty() {
            url.push_str(&format!("&cursor={}", url_encode(cursor)));
        }
        url
    }
}

/// Host names of the devices `actions` name.
async fn hostnames(state: &AppState, actions: &[Action]) -> Result<HashMap<Uuid, String>, crate::store::StoreError> {
    let mut ids: Vec<Uuid> = actions.iter().map(|a| a.device_id).collect();
    ids.sort();
    ids.dedup();
    state.store.device_names(&ids).await
}

fn status_badge(status: ActionStatus) -> Markup {
    html! { span class=(format!("badge {}", status.as_str())) { (status.as_str().replace('_', " ")) } }
}

fn option_list(name: &str, label: &str, current: &str, values: &[&str]) -> Markup {
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

/// `GET /actions`: the pending tab (with approve / reject for approvers)
/// or history, filtered, 50 a page, newest first.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let op = match signed_in(&state, &headers, "/actions").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let cursor = (!q.cursor.is_empty()).then_some(q.cursor.as_str());
    let loaded = async {
        let page = state.store.actions(&q.filter(), cursor, PAGE).await?;
        let names = hostnames(&state, &page.items).await?;
        Ok::<_, crate::store::StoreError>((page, names))
    };
    let (found, names) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("action list", e),
    };
    let pending = q.pending();
    let can_decide = pending && op.can(Role::Approver);
    let kinds: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
    let statuses: Vec<&str> =
        ActionStatus::ALL.iter().filter(|s| **s != ActionStatus::PendingApproval).map(|s| s.as_str()).collect();
    let sources: Vec<&str> = ActionSource::ALL.iter().map(|s| s.as_str()).collect();
    let csv = q.link("").replacen("/actions?", "/actions.csv?", 1);
    let body = html! {
        h1 { "Action center" }
        nav.tabs aria-label="Action center" {
            a href="/actions?tab=pending" aria-current=[pending.then_some("page")] { "Pending" }
            a href="/actions?tab=history" aria-current=[(!pending).then_some("page")] { "History" }
        }
        @if let Some(notice) = done_notice(&q.done) { p.notice role="status" { (notice) } }
        form.filters method="get" action="/actions" {
            input type="hidden" name="tab" value=(if pending { "pending" } else { "history" });
            (option_list("kind", "Kind", &q.kind, &kinds))
            @if !pending { (option_list("status", "Status", &q.status, &statuses)) }
            (option_list("source", "Source", &q.source, &sources))
            label for="period" {
                "Requested within"
                select #period name="period" {
                    option value="" { "Any time" }
                    @for (value, _, text) in PERIODS { option value=(value) selected[value == q.period] { (text) } }
                }
            }
            label for="device" { "Device id" input #device name="device" type="text" value=(q.device) size="36"; }
            button type="submit" { "Apply" }
            a.export href=(csv) download { "Export CSV" }
        }
        section #live data-live {
            @if found.items.is_empty() {
                p { @if pending { "Nothing waits for approval." } @else { "No actions match." } }
            } @else {
                @if can_decide {
                    form #bulk.bulk method="post" action="/actions/decide" {
                        input type="hidden" name="csrf_token" value=(op.csrf_token);
                        label for="bulk-comment" { "Comment for the selected" }
                        input #bulk-comment name="comment" type="text" placeholder="why (optional)";
                        button type="submit" name="decision" value="approve" { "Approve selected" }
                        button type="submit" name="decision" value="reject" { "Reject selected" }
                    }
                }
                table.list {
                    thead { tr {
                        @if can_decide { th { span.sr { "Select" } } }
                        th { "Requested" } th { "Action" } th { "Device" } th { "Status" } th { "By" } th { "Comment" }
                    } }
                    tbody {
                        @for a in &found.items {
                            tr {
                                @if can_decide {
                                    td { input type="checkbox" name="id" value=(a.id) form="bulk"
                                        aria-label=(format!("Select {} on {}", a.kind, names.get(&a.device_id).map_or("", |n| n))); }
                                }
                                td { (rfc3339(a.created_at)) }
                                td { a href=(format!("/actions/{}", a.id)) { (a.kind.as_str()) } }
                                td { a href=(format!("/devices/{}", a.device_id)) { (names.get(&a.device_id).map_or("(gone)", |n| n)) } }
                                td { (status_badge(a.status)) }
                                td { (a.requestor) }
                                td { (a.comment) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if cursor.is_some() { a href=(q.link("")) { "← Newest" } }
            @if let Some(next) = &found.next_cursor { a rel="next" href=(q.link(next)) { "Older →" } }
        }
    };
    page(StatusCode::OK, layout("Action center", Some(&op), &op.csrf_token, body))
}

fn done_notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "approved" => "Approved: the device gets it now.",
        "rejected" => "Rejected.",
        "cancelled" => "Cancelled.",
        "undo" => "The undo is requested: it is the action shown here.",
        "requested" => "Requested.",
        "existing" => "The same action was already live: this is it.",
        _ => return None,
    })
}

/// `GET /actions.csv`: the filtered history as CSV, every page.
pub async fn export(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = signed_in(&state, &headers, "/actions").await {
        return r;
    }
    match crate::api::actions_csv(&state.store, &q.filter()).await {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"picket-actions.csv\""),
            ],
            csv,
        )
            .into_response(),
        Err(e) => db_error("action export", e),
    }
}

/// What an error from the action center reads as, and its status.
pub(super) fn refusal(e: &ActionError) -> (StatusCode, String) {
    let status = match e {
        ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
        ActionError::Forbidden(_) => StatusCode::FORBIDDEN,
        ActionError::NotFound(_) => StatusCode::NOT_FOUND,
        ActionError::Conflict(_) => StatusCode::CONFLICT,
        ActionError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        ActionError::Store(_) => "The database could not be reached; nothing changed.".to_string(),
        other => other.to_string(),
    };
    (status, message)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    done: String,
}

/// `GET /actions/{id}`: the action, its result and its timeline, with the
/// decisions the signed-in person may take.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let op = match signed_in(&state, &headers, &format!("/actions/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let notice = done_notice(&q.done).map(|n| (StatusCode::OK, n.to_string()));
    action_page(&state, &op, &raw, notice).await
}

/// The action page; `notice` is a status and what to say above it (an
/// error when the status is not 200).
async fn action_page(state: &AppState, op: &Operator, raw: &str, notice: Option<(StatusCode, String)>) -> Response {
    let not_found = || {
        page(
            StatusCode::NOT_FOUND,
            layout(
                "No such action",
                Some(op),
                &op.csrf_token,
                html! { h1 { "No such action" } p { a href="/actions" { "Action center" } } },
            ),
        )
    };
    let Ok(id) = raw.parse::<Uuid>() else { return not_found() };
    let loaded = async {
        let Some(a) = state.store.action(id).await? else { return Ok(None) };
        let events = state.store.action_events(id).await?;
        let device = state.store.device(a.device_id).await?.map(|d| d.hostname).unwrap_or_else(|| "(gone)".into());
        Ok::<_, crate::store::StoreError>(Some((a, events, device)))
    };
    let (a, events, hostname) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return db_error("action page", e),
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let asked_by_me = a.requestor_identity == op.caller().identity;
    let pending = a.status == ActionStatus::PendingApproval;
    let cancellable = matches!(a.status, ActionStatus::Queued | ActionStatus::Sent);
    let undoable = a.status == ActionStatus::Succeeded && a.kind.undo().is_some() && a.undone_by.is_none();
    let decide = |verb: &str, label: &str| {
        html! {
            form.decide method="post" action=(format!("/actions/{}/{verb}", a.id)) {
                input type="hidden" name="csrf_token" value=(op.csrf_token);
                label for=(format!("{verb}-comment")) { "Comment" }
                input id=(format!("{verb}-comment")) name="comment" type="text" placeholder="why";
                button type="submit" { (label) }
            }
        }
    };
    let result = a.result.as_deref().map(|r| {
        serde_json::from_str::<serde_json::Value>(r)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| r.to_string())
    });
    let body = html! {
        p { a href="/actions" { "← Action center" } }
        h1 { (a.kind.as_str()) " on " (hostname) " " (status_badge(a.status)) }
        @if let Some((s, text)) = &notice {
            @if *s == StatusCode::OK { p.notice role="status" { (text) } } @else { p.error role="alert" { (text) } }
        }
        section #live data-live {
            dl.facts {
                dt { "Action id" } dd { code { (a.id) } }
                dt { "Device" } dd { a href=(format!("/devices/{}", a.device_id)) { (hostname) } }
                dt { "Status" } dd { (status_badge(a.status)) @if let Some(r) = &a.failure_reason { " — " (r) } }
                dt { "Source" } dd { (a.source.as_str()) }
                dt { "Requested by" } dd { (a.requestor) }
                dt { "Comment" } dd { (a.comment) }
                dt { "Requested" } dd { (rfc3339(a.created_at)) }
                @if let Some(by) = &a.decided_by {
                    dt { "Decided by" } dd { (by) @if let Some(c) = a.decision_comment.as_deref().filter(|c| !c.is_empty()) { " — " (c) } }
                }
                @if let (Some(phase), Some(p)) = (&a.progress_phase, a.progress_percent) {
                    dt { "Progress" } dd { (phase) " " (p) "%" }
                }
                dt { "Parameters" } dd { code { (a.params) } }
                @if let Some(r) = &result { dt { "Result" } dd { pre { (r) } } }
                @if let Some(e) = &a.error { dt { "Error" } dd.error { (e) } }
                @if let Some(u) = a.undoes { dt { "Undoes" } dd { a href=(format!("/actions/{u}")) { (u) } } }
                @if let Some(u) = a.undone_by { dt { "Undone by" } dd { a href=(format!("/actions/{u}")) { (u) } } }
                @if let Some(i) = &a.investigation_id { dt { "Investigation" } dd { code { (i) } } }
                @if let Some(x) = a.expires_at { dt { "Expires" } dd { (rfc3339(x)) } }
            }
            h2 #timeline { "Timeline" }
            table.list {
                thead { tr { th { "When" } th { "From" } th { "To" } th { "By" } th { "Comment" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (rfc3339(e.at)) }
                            td { (e.from_status.as_deref().unwrap_or("")) }
                            td { (e.status) }
                            td { (e.actor) }
                            td { (e.comment) }
                        }
                    }
                }
            }
        }
        @if pending && op.can(Role::Approver) {
            @if asked_by_me && state.actions.policy.two_person(a.kind) {
                p.notice { "You requested this action: another approver must decide it (two-person rule)." }
            } @else {
                h2 { "Decide" }
                div.decisions { (decide("approve", "Approve")) (decide("reject", "Reject")) }
            }
        }
        @if cancellable && op.can(Role::Responder) { h2 { "Cancel" } (decide("cancel", "Cancel action")) }
        @if undoable && op.can(Role::Responder) { h2 { "Undo" } (decide("undo", "Undo action")) }
    };
    page(status, layout(&format!("{} on {hostname}", a.kind.as_str()), Some(op), &op.csrf_token, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionForm {
    csrf_token: String,
    comment: String,
    /// Where to go back to after the decision (an investigation's page);
    /// local paths only. Empty: the action's page.
    back: String,
}

/// `POST /actions/{id}/{verb}`: approve, reject, cancel or undo as the
/// signed-in person; back to the action (the undo's own page for undo).
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((raw, verb)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let op = match changing(&state, &headers, &format!("/actions/{}", url_encode(&raw)), &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let Ok(id) = raw.parse::<Uuid>() else { return action_page(&state, &op, &raw, None).await };
    let caller = op.caller();
    let who = caller.requestor();
    let outcome = match verb.as_str() {
        "approve" => state.actions.approve(&who, id, &form.comment).await.map(|a| (a.id, "approved")),
        "reject" => state.actions.reject(&who, id, &form.comment).await.map(|a| (a.id, "rejected")),
        "cancel" => state.actions.cancel(&who, id, &form.comment).await.map(|a| (a.id, "cancelled")),
        "undo" => state.actions.undo(&who, id, &form.comment).await.map(|(a, _)| (a.id, "undo")),
        _ => Err(ActionError::NotFound(format!("no decision {verb:?}: approve, reject, cancel or undo"))),
    };
    let target = format!("/actions/{id}/{verb}");
    match outcome {
        Ok((shown, done)) => {
            audit(&state.store, &op.user, "POST", &target, "ok", &format!("action={id} {done} via console")).await;
            let back = super::local_next(Some(form.back.as_str()));
            if form.back.starts_with("/investigations/") && back == form.back {
                return Redirect::to(&back).into_response();
            }
            Redirect::to(&format!("/actions/{shown}?done={done}")).into_response()
        }
        Err(e) => {
            let (status, message) = refusal(&e);
            if let ActionError::Store(e) = &e {
                tracing::error!(error = %e, "console decision failed");
            }
            audit(&state.store, &op.user, "POST", &target, status.as_str(), &message).await;
            action_page(&state, &op, &raw, Some((status, message))).await
        }
    }
}

/// `POST /actions/decide`: approve or reject every ticked action (form
/// fields `id`, repeated; `decision`; `comment`); each gets its own
/// outcome, listed on the page that follows.
pub async fn decide_many(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
    let op = match changing(&state, &headers, "/actions", field("csrf_token")).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Approver) {
        return forbidden("Deciding actions needs the approver role.");
    }
    let ids: Vec<Uuid> = fields.iter().filter(|(k, _)| k == "id").filter_map(|(_, v)| v.parse().ok()).collect();
    let comment = field("comment");
    let decision = field("decision");
    let back = |status: StatusCode, message: Markup| {
        page(
            status,
            layout(
                "Decisions",
                Some(&op),
                &op.csrf_token,
                html! { h1 { "Decisions" } (message) p { a href="/actions?tab=pending" { "← Pending" } } },
            ),
        )
    };
    if ids.is_empty() || ids.len() > 10_000 {
        return back(StatusCode::BAD_REQUEST, html! { p.error role="alert" { "Tick 1 to 10,000 actions first." } });
    }
    let caller = op.caller();
    let who = caller.requestor();
    let outcomes: Vec<(Uuid, Result<(), ActionError>)> = match decision {
        "approve" => match state.actions.approve_many(&who, &ids, comment).await {
            Ok(o) => ids.iter().copied().zip(o).collect(),
            Err(e) => {
                let (status, message) = refusal(&e);
                return back(status, html! { p.error role="alert" { (message) } });
            }
        },
        "reject" => {
            let mut o = Vec::with_capacity(ids.len());
            for &id in &ids {
                o.push((id, state.actions.reject(&who, id, comment).await.map(|_| ())));
            }
            o
        }
        _ => return back(StatusCode::BAD_REQUEST, html! { p.error role="alert" { "Choose approve or reject." } }),
    };
    let done = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let verb = if decision == "approve" { "approved" } else { "rejected" };
    audit(
        &state.store,
        &op.user,
        "POST",
        "/actions/decide",
        "ok",
        &format!("{verb} {done} of {} via console", ids.len()),
    )
    .await;
    back(
        StatusCode::OK,
        html! {
            p.notice role="status" { (done) " of " (ids.len()) " " (verb) "." }
            ul.outcomes {
                @for (id, r) in &outcomes {
                    li {
                        a href=(format!("/actions/{id}")) { code { (id) } } ": "
                        @match r { Ok(()) => { (verb) }, Err(e) => { span.error { (refusal(e).1) } } }
                    }
                }
            }
        },
    )
}

/// An error from an API function the console calls, as a page.
fn api_refusal(op: &Operator, e: &crate::api::ApiError) -> Response {
    page(
        e.status(),
        layout("Refused", Some(op), &op.csrf_token, html! { h1 { "Not available" } p.error { (e.to_string()) } }),
    )
}

/// `GET /actions/{id}/package`: a collected investigation package
/// (responder), ranges and all, as the API serves it.
pub async fn package(State(state): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, &format!("/actions/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Responder) {
        return forbidden("Packages need the responder role.");
    }
    let Ok(id) = raw.parse::<Uuid>() else { return action_page(&state, &op, &raw, None).await };
    let target = format!("/actions/{id}/package");
    match crate::api::download_package(State(state.clone()), crate::api::Id(id), headers).await {
        Ok(r) => {
            audit(&state.store, &op.user, "GET", &target, "ok", "package downloaded via console").await;
            r
        }
        Err(e) => api_refusal(&op, &e),
    }
}

/// `GET /samples/{sha256}`: a collected sample, as the encrypted ZIP the
/// API serves (responder; the API audits the download).
pub async fn sample(State(state): State<AppState>, headers: HeaderMap, Path(sha256): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, "/devices").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Responder) {
        return forbidden("Samples need the responder role.");
    }
    let sha256 = sha256.to_ascii_lowercase();
    if !picket_common::detection::is_sha256_hex(&sha256) {
        return api_refusal(&op, &crate::api::ApiError::NotFound(format!("no sample {sha256:?}")));
    }
    match crate::api::download_sample(State(state.clone()), op.caller(), crate::api::Sha256Path(sha256)).await {
        Ok(r) => r,
        Err(e) => api_refusal(&op, &e),
    }
}
