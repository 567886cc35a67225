//! The mail explorer: search every mail host's mailboxes (responders), see
//! the clusters as the hosts answer, and soft delete or junk a whole
//! cluster from there. Everything goes through the same services as the
//! API (`crate::api::mail`) and the action center.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use picket_common::actions::mail::MAX_ATTACHMENT_BATCH;
use picket_common::actions::ActionKind;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{audit, changing, db_error, forbidden, layout, page, signed_in, url_encode, Operator};
use crate::actions::{ActionError, Request};
use crate::api::mail::{start, view, ClusterBy, CreateMailSearch};
use crate::api::{ApiError, AppState};
use crate::store::Role;

/// References per action: the coordinator caps an action's parameters at
/// 64 KiB, and a reference takes up to ~200 bytes.
const REFS_PER_ACTION: usize = 250;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchForm {
    csrf_token: String,
    from: String,
    recipient: String,
    subject: String,
    message_id: String,
    since: String,
    before: String,
    url: String,
    attachment_name: String,
    attachment_sha256: String,
}

/// `GET /mail`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/mail").await {
        Ok(op) => form_page(&op, &SearchForm::default(), None),
        Err(r) => r,
    }
}

fn form_page(op: &Operator, typed: &SearchForm, error: Option<(StatusCode, String)>) -> Response {
    let field = |id: &str, name: &str, label: &str, value: &str, kind: &str| {
        html! {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value);
        }
    };
    let body = html! {
        h1 { "Mail explorer" }
        p { a href="/mail/links" { "Time of click: blocked URLs and clicks →" } }
        p.hint { "Searches the mailboxes of every mail host (devices whose agent has a [mail] section). Every criterion given must hold; text matches anywhere, any case. A link, domain or attachment criterion reads each candidate message whole (slower) and lets results be grouped by attachment." }
        @if let Some((_, e)) = &error { p.error #search-error role="alert" { (e) } }
        @if op.can(Role::Responder) {
            form.action-bar #mail-search method="post" action="/mail/search" {
                input type="hidden" name="csrf_token" value=(op.csrf_token);
                (field("m-from", "from", "From", &typed.from, "text"))
                (field("m-recipient", "recipient", "To or Cc", &typed.recipient, "text"))
                (field("m-subject", "subject", "Subject", &typed.subject, "text"))
                (field("m-id", "message_id", "Message-ID", &typed.message_id, "text"))
                (field("m-since", "since", "Received from", &typed.since, "date"))
                (field("m-before", "before", "Received before", &typed.before, "date"))
                (field("m-url", "url", "Link or domain", &typed.url, "text"))
                (field("m-att", "attachment_name", "Attachment name", &typed.attachment_name, "text"))
                (field("m-sha", "attachment_sha256", "Attachment SHA-256", &typed.attachment_sha256, "text"))
                button type="submit" { "Search" }
            }
        } @else {
            p { "Searching mailboxes needs the responder role." }
        }
    };
    let status = error.map(|(s, _)| s).unwrap_or(StatusCode::OK);
    page(status, layout("Mail explorer", Some(op), &op.csrf_token, body))
}

/// `POST /mail/search`.
pub async fn search(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SearchForm>) -> Response {
    let op = match changing(&state, &headers, "/mail", &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Responder) {
        return forbidden("Searching mailboxes needs the responder role.");
    }
    let mut criteria = Map::new();
    for (k, v) in [
        ("from", &form.from),
        ("recipient", &form.recipient),
        ("subject", &form.subject),
        ("message_id", &form.message_id),
        ("since", &form.since),
        ("before", &form.before),
        ("url", &form.url),
        ("attachment_name", &form.attachment_name),
        ("attachment_sha256", &form.attachment_sha256),
    ] {
        if !v.trim().is_empty() {
            criteria.insert(k.into(), json!(v.trim()));
        }
    }
    let caller = op.caller();
    let req = CreateMailSearch { criteria: Value::Object(criteria), devices: None, comment: None };
    match start(&state, &caller, req).await {
        Ok(created) => {
            let id = created["id"].as_str().unwrap_or_default().to_string();
            audit(&state.store, &op.user, "POST", "/mail/searches", "ok", &format!("search={id} via console")).await;
            Redirect::to(&format!("/mail/searches/{id}")).into_response()
        }
        Err(ApiError::Internal(e)) => db_error("mail search", e),
        Err(e) => form_page(&op, &form, Some((e.status(), e.to_string()))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResultsQuery {
    by: String,
    done: String,
}

fn by(raw: &str) -> ClusterBy {
    match raw {
        "sender_subject" => ClusterBy::SenderSubject,
        "attachment" => ClusterBy::Attachment,
        _ => ClusterBy::MessageId,
    }
}

fn by_name(by: ClusterBy) -> &'static str {
    match by {
        ClusterBy::MessageId => "message_id",
        ClusterBy::SenderSubject => "sender_subject",
        ClusterBy::Attachment => "attachment",
    }
}

/// `GET /mail/searches/{id}`: the hosts and every cluster (largest first).
pub async fn results(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Response {
    let op = match signed_in(&state, &headers, &format!("/mail/searches/{raw}")).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let Ok(id) = raw.parse::<Uuid>() else {
        return page(
            StatusCode::NOT_FOUND,
            layout("Not found", Some(&op), &op.csrf_token, html! { h1 { "No such search" } }),
        );
    };
    let (summary, clusters) = match view(&state, id, by(&q.by)).await {
        Ok(v) => v,
        Err(ApiError::NotFound(m)) => {
            return page(StatusCode::NOT_FOUND, layout("Not found", Some(&op), &op.csrf_token, html! { h1 { (m) } }))
        }
        Err(e) => return db_error("mail search", e),
    };
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let grouping = by(&q.by);
    let body = html! {
        h1 { "Mail search" }
        @if !q.done.is_empty() { div.notice role="status" { (q.done) } }
        p { "Criteria: " code { (summary["criteria"].to_string()) } " · by " (text(&summary["created_by"])) " · " (text(&summary["created_at"])) }
        p { "Group by: "
            a href=(format!("/mail/searches/{id}")) aria-current=[(grouping == ClusterBy::MessageId).then_some("page")] { "Message-ID" } " · "
            a href=(format!("/mail/searches/{id}?by=sender_subject")) aria-current=[(grouping == ClusterBy::SenderSubject).then_some("page")] { "sender and subject" } " · "
            a href=(format!("/mail/searches/{id}?by=attachment")) aria-current=[(grouping == ClusterBy::Attachment).then_some("page")] { "attachment" }
        }
        section.panel.wide #mail-results data-live[summary["complete"] != true] {
            h2 { "Mail hosts" }
            @if summary["hosts"].as_array().is_none_or(Vec::is_empty) { p { "No enrolled device is a mail host." } }
            table.list {
                thead { tr { th { "Host" } th { "Status" } th { "Found" } th { "Note" } } }
                tbody { @for h in summary["hosts"].as_array().into_iter().flatten() { tr {
                    td { a href=(format!("/devices/{}", text(&h["device_id"]))) { (text(&h["hostname"])) } }
                    td { a href=(format!("/actions/{}", text(&h["action_id"]))) { (text(&h["status"])) } }
                    td { (h["found"].as_u64().map(|n| n.to_string()).unwrap_or_default()) }
                    td { @if let Some(e) = h["error"].as_str() { span.error { (e) } }
                         @else if h["truncated"] == true { "more than the limit: narrow the search" } }
                } } }
            }
            h2 { (summary["messages"]) " messages in " (clusters.len()) " clusters" }
            @for (n, c) in clusters.iter().take(100).enumerate() {
                (cluster(&op, id, grouping, n, c))
            }
            @if clusters.len() > 100 { p.hint { "The 100 largest clusters are shown; narrow the search for the others." } }
        }
    };
    page(StatusCode::OK, layout("Mail search", Some(&op), &op.csrf_token, body))
}

fn cluster(op: &Operator, id: Uuid, grouping: ClusterBy, n: usize, c: &Value) -> Markup {
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    let places = c["places"].as_array().cloned().unwrap_or_default();
    html! {
        article.cluster id=(format!("cluster-{n}")) {
            h3 { (text(&c["subject"])) }
            @if let Some(a) = c["attachment"].as_object() {
                p { "Attachment " strong { (a.get("name").and_then(Value::as_str).unwrap_or("")) } " · SHA-256 " code { (a.get("sha256").and_then(Value::as_str).unwrap_or("")) } " · " (a.get("size").and_then(Value::as_u64).unwrap_or(0)) " bytes" }
            }
            p { "From " (text(&c["from"])) " · " (c["messages"]) " messages in " (c["mailboxes"]) " mailboxes · Message-ID " code { (text(&c["message_id"])) } }
            details {
                summary { "Where" }
                ul { @for p in places.iter().take(200) {
                    li { (text(&p["hostname"])) " / " (text(&p["user"])) " / " (text(&p["mailbox"])) " (" (p["count"]) ")" }
                } }
                @if places.len() > 200 { p.hint { (places.len() - 200) " more places" } }
            }
            @if op.can(Role::Responder) {
                form.action-bar method="post" action=(format!("/mail/searches/{id}/act")) {
                    input type="hidden" name="csrf_token" value=(op.csrf_token);
                    input type="hidden" name="key" value=(text(&c["key"]));
                    input type="hidden" name="by" value=(by_name(grouping));
                    label for=(format!("kind-{n}")) { "Action" }
                    select id=(format!("kind-{n}")) name="kind" {
                        option value="soft_delete_email" { "Soft delete" }
                        option value="move_to_junk" { "Move to junk" }
                        option value="move_to_inbox" { "Move to inbox" }
                        option value="quarantine_email" { "Quarantine" }
                        @if grouping == ClusterBy::Attachment {
                            option value="quarantine_attachment" { "Quarantine this attachment (the users keep the rest of the message)" }
                        }
                        @if op.can(Role::Approver) {
                            option value="hard_delete_email" { "Hard delete (cannot be undone; a second approver decides)" }
                        }
                    }
                    label for=(format!("why-{n}")) { "Why" }
                    input id=(format!("why-{n}")) name="comment" type="text" required;
                    button type="submit" { "Apply to the cluster" }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActForm {
    csrf_token: String,
    key: String,
    by: String,
    kind: String,
    comment: String,
}

/// `POST /mail/searches/{id}/act`: one action per host (and per
/// [`REFS_PER_ACTION`] messages) on every message of the cluster.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(form): Form<ActForm>,
) -> Response {
    let back = format!("/mail/searches/{raw}");
    let op = match changing(&state, &headers, &back, &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !op.can(Role::Responder) {
        return forbidden("Acting on mail needs the responder role.");
    }
    let kind = match ActionKind::parse(&form.kind) {
        Some(
            k @ (ActionKind::SoftDeleteEmail
            | ActionKind::MoveToJunk
            | ActionKind::MoveToInbox
            | ActionKind::QuarantineEmail
            | ActionKind::QuarantineAttachment
            | ActionKind::HardDeleteEmail),
        ) => k,
        _ => return forbidden("Unknown mail action."),
    };
    let Ok(id) = raw.parse::<Uuid>() else { return forbidden("No such search.") };
    let (_, clusters) = match view(&state, id, by(&form.by)).await {
        Ok(v) => v,
        Err(e) => return db_error("mail search", e),
    };
    let Some(c) = clusters.iter().find(|c| c["key"] == form.key.as_str()) else {
        return Redirect::to(&format!("{back}?done=That+cluster+is+no+longer+in+the+results.")).into_response();
    };
    let caller = op.caller();
    let who = caller.requestor();
    let (mut created, mut refused) = (0, Vec::new());
    for target in c["targets"].as_array().into_iter().flatten() {
        let Some(device) = target["device_id"].as_str().and_then(|d| d.parse::<Uuid>().ok()) else { continue };
        let messages = target["messages"].as_array().cloned().unwrap_or_default();
        // An attachment quarantine reads each message whole: fewer per action,
        // and only the cluster's attachment.
        let per_action = if kind == ActionKind::QuarantineAttachment { MAX_ATTACHMENT_BATCH } else { REFS_PER_ACTION };
        let sha256 = c["attachment"]["sha256"].as_str().unwrap_or_default();
        if kind == ActionKind::QuarantineAttachment && sha256.is_empty() {
            return forbidden("Quarantine an attachment from the results grouped by attachment.");
        }
        for chunk in messages.chunks(per_action) {
            let params = if kind == ActionKind::QuarantineAttachment {
                // The reason is the comment, as the note in the users' copies says it.
                let reason: String = form.comment.trim().chars().filter(|c| !c.is_control()).take(255).collect();
                let reason = (!reason.is_empty()).then_some(reason);
                json!({ "messages": chunk, "sha256": [sha256], "reason": reason })
            } else {
                json!({ "messages": chunk })
            };
            let request = Request {
                device,
                kind,
                params,
                comment: &form.comment,
                source: who.source_for(kind),
                investigation_id: None,
                needs_approval: false,
                undoes: None,
            };
            match state.actions.create(&who, request).await {
                Ok((action, _)) => {
                    created += 1;
                    let detail = format!("action={} kind={kind} device={device} search={id} via console", action.id);
                    audit(&state.store, &op.user, "POST", &format!("/devices/{device}/actions"), "ok", &detail).await;
                }
                Err(ActionError::Store(e)) => return db_error("mail action", e),
                Err(e) => refused.push(super::actions::refusal(&e).1),
            }
        }
    }
    let mut done = format!("{created} {kind} action(s) requested; follow them in the action center.");
    if !refused.is_empty() {
        done = format!("{done} Refused: {}", refused.join("; "));
    }
    Redirect::to(&format!("{back}?done={}", url_encode(&done))).into_response()
}

/// `GET /mail/links`: time-of-click protection — the URLs blocked (each
/// by its `block_url` action, whose undo lifts it) and the latest clicks
/// on wrapped links.
pub async fn links(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match signed_in(&state, &headers, "/mail/links").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let blocks = match state.store.url_blocks().await {
        Ok(b) => b,
        Err(e) => return db_error("blocked URLs", e),
    };
    let clicks = match state.store.clicks(None, None, 200).await {
        Ok(c) => c,
        Err(e) => return db_error("clicks", e),
    };
    let hosts: Vec<Uuid> = blocks.iter().map(|b| b.device_id).collect();
    let names = match state.store.device_names(&hosts).await {
        Ok(n) => n,
        Err(e) => return db_error("device names", e),
    };
    let name = |id: &Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let now = crate::clock::now_ms();
    let rfc = crate::clock::rfc3339;
    let body = html! {
        h1 { "Time of click" }
        p.hint { "Links in delivered mail lead through the click listener, which checks them against these blocks when they are clicked — mail delivered before a block included. Block a link with picketctl block-url or from an email investigation; undo the block's action to lift it." }
        h2 { "Blocked URLs" }
        @if blocks.is_empty() { p #no-blocks { "Nothing is blocked." } } @else {
            table.list #blocked-urls {
                thead { tr { th.tight { "Match" } th { "URL or domain" } th { "Mail host" } th { "Expires" } th { "Reason" } th.tight { "By" } th.tight { "Action" } } }
                tbody {
                    @for b in &blocks {
                        tr {
                            td.tight { (b.match_kind) }
                            td { code { (b.value) } }
                            td { a href=(format!("/devices/{}", b.device_id)) { (name(&b.device_id)) } }
                            td {
                                @match b.expires_at {
                                    Some(t) if t <= now => { "expired " (rfc(t)) }
                                    Some(t) => { (rfc(t)) }
                                    None => { "never" }
                                }
                            }
                            td { (b.comment) }
                            td.tight { (b.created_by) }
                            td.tight { a href=(format!("/actions/{}", b.id)) { "block_url" } }
                        }
                    }
                }
            }
        }
        h2 { "Latest clicks" }
        @if clicks.is_empty() { p #no-clicks { "No wrapped link was clicked yet." } } @else {
            table.list #clicks {
                thead { tr { th.tight { "When" } th.tight { "Verdict" } th { "Recipient" } th { "URL" } th { "Message-ID" } th.tight { "Client" } } }
                tbody {
                    @for c in &clicks {
                        tr {
                            td.tight { (rfc(c.at)) }
                            td.tight { span class=(format!("badge {}", c.verdict)) { (c.verdict) } }
                            td { (c.recipient) }
                            td { code { (c.url) } }
                            td { code { (c.message_id) } }
                            td.tight { (c.client) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, layout("Time of click", Some(&op), &op.csrf_token, body))
}
