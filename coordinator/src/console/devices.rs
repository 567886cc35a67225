//! Devices: the searchable list, and one device's facts with its recent
//! actions and alerts.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use picket_common::actions::ActionKind;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{audit, csrf_ok, db_error, forbidden, layout, page, signed_in, url_encode, Operator};
use crate::actions::{ActionError, Request};
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::store::{
    Action, ActionFilter, ActionStatus, AlertFilter, Device, DeviceQuery, DeviceSort, DeviceStatus, Role, StoreError,
};

/// Rows a page shows.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    group: String,
    /// online, offline, revoked, offboarded; empty: all.
    status: String,
    /// isolated or restricted; empty: all.
    containment: String,
    sort: String,
    /// `desc` for descending.
    order: String,
    page: String,
}

/// `online` when a session is live here, else the registry's word.
fn status_of(state: &AppState, d: &Device) -> &'static str {
    match d.status {
        DeviceStatus::Revoked => "revoked",
        DeviceStatus::Offboarded => "offboarded",
        DeviceStatus::Active if state.gateway.session(&d.id).is_some() => "online",
        DeviceStatus::Active => "offline",
    }
}

fn when(ms: Option<i64>) -> String {
    ms.map(rfc3339).unwrap_or_else(|| "never".into())
}

fn sort_of(s: &str) -> DeviceSort {
    match s {
        "last_seen" => DeviceSort::LastSeen,
        "enrolled" => DeviceSort::Enrolled,
        "group" => DeviceSort::Group,
        "os" => DeviceSort::Os,
        _ => DeviceSort::Hostname,
    }
}

/// A select whose current value is `current`.
fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        label for=(name) {
            (label)
            select id=(name) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (text) }
                }
            }
        }
    }
}

/// `GET /devices`: search by host name, IP or id; filter by group and
/// status; sort; 50 a page.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let op = match signed_in(&state, &headers, "/devices").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let text = q.q.trim();
    let (registry, session) = match q.status.as_str() {
        "online" => (Some(DeviceStatus::Active), Some(true)),
        "offline" => (Some(DeviceStatus::Active), Some(false)),
        "revoked" => (Some(DeviceStatus::Revoked), None),
        "offboarded" => (Some(DeviceStatus::Offboarded), None),
        _ => (None, None),
    };
    let query = DeviceQuery {
        text,
        group: q.group.trim(),
        status: registry,
        sort: sort_of(&q.sort),
        descending: q.order == "desc",
    };
    let loaded =
        tokio::try_join!(state.store.find_devices(&query), state.store.device_groups(), state.store.containment());
    let (found, groups, contained) = match loaded {
        Ok(r) => r,
        Err(e) => {
            return db_error("device search", e);
        }
    };
    let found: Vec<Device> = match session {
        Some(online) => found.into_iter().filter(|d| state.gateway.session(&d.id).is_some() == online).collect(),
        None => found,
    };
    let found: Vec<Device> = match q.containment.as_str() {
        "isolated" => found.into_iter().filter(|d| contained.get(&d.id).is_some_and(|c| c.isolated)).collect(),
        "restricted" => found.into_iter().filter(|d| contained.get(&d.id).is_some_and(|c| c.restricted)).collect(),
        _ => found,
    };
    let pages = found.len().div_ceil(PAGE).max(1);
    let current = q.page.parse::<usize>().unwrap_or(1).clamp(1, pages);
    let shown = &found[(current - 1) * PAGE..(current * PAGE).min(found.len())];
    let link = |p: usize| {
        format!(
            "/devices?q={}&group={}&status={}&containment={}&sort={}&order={}&page={p}",
            url_encode(text),
            url_encode(&q.group),
            url_encode(&q.status),
            url_encode(&q.containment),
            url_encode(&q.sort),
            url_encode(&q.order)
        )
    };
    let mut group_options = vec![("", "All groups")];
    group_options.extend(groups.iter().map(|g| (g.name.as_str(), g.name.as_str())));
    let body = html! {
        h1 { "Devices" }
        form.filters method="get" action="/devices" role="search" {
            label for="q" { "Search" input #q name="q" type="search" value=(text) placeholder="host name, IP or id"; }
            (select("group", "Group", &q.group, &group_options))
            (select("status", "Status", &q.status, &[("", "Any"), ("online", "Online"), ("offline", "Offline"),
                ("revoked", "Revoked"), ("offboarded", "Offboarded")]))
            (select("containment", "Containment", &q.containment, &[("", "Any"), ("isolated", "Isolated"),
                ("restricted", "Code restricted")]))
            (select("sort", "Sort by", &q.sort, &[("hostname", "Host name"), ("last_seen", "Last seen"),
                ("enrolled", "Enrolled"), ("group", "Group"), ("os", "OS")]))
            (select("order", "Order", &q.order, &[("asc", "Ascending"), ("desc", "Descending")]))
            button type="submit" { "Apply" }
        }
        p.count {
            (found.len()) @if found.len() == 1 { " device" } @else { " devices" }
            @if found.len() > PAGE { " · page " (current) " of " (pages) }
        }
        @if !found.is_empty() { table.list {
            thead { tr { th { "Host name" } th { "Status" } th { "Group" } th { "IP" } th { "OS" } th { "Agent" } th { "Last seen" } } }
            tbody {
                @for d in shown {
                    @let status = status_of(&state, d);
                    tr {
                        td { a href=(format!("/devices/{}", d.id)) { (d.hostname) } }
                        td {
                            span class=(format!("badge {status}")) { (status) }
                            @if let Some(c) = contained.get(&d.id) {
                                @if c.isolated { " " span.badge.isolated { "isolated" } }
                                @if c.restricted { " " span.badge.isolated { "restricted" } }
                            }
                        }
                        td { (d.group) }
                        td { (d.ip) }
                        td { (d.os) }
                        td { (d.agent_version) }
                        td { (when(d.last_seen)) }
                    }
                }
            }
        } }
        @if found.is_empty() { p { "No device matches." } }
        nav.pager aria-label="Pages" {
            @if current > 1 { a rel="prev" href=(link(current - 1)) { "← Previous" } }
            @if current < pages { a rel="next" href=(link(current + 1)) { "Next →" } }
        }
    };
    page(StatusCode::OK, layout("Devices", Some(&op), &op.csrf_token, body))
}

/// The latest succeeded `on` action if no succeeded `off` came after it:
/// the device's state as its own results last reported it (for example
/// isolated since that action).
async fn in_effect(
    state: &AppState,
    device: Uuid,
    on: ActionKind,
    off: ActionKind,
) -> Result<Option<Action>, StoreError> {
    let latest = |kind| ActionFilter {
        device: Some(device),
        kind: Some(kind),
        statuses: vec![ActionStatus::Succeeded],
        ..ActionFilter::default()
    };
    let (on_filter, off_filter) = (latest(on), latest(off));
    let (on_page, off_page) =
        tokio::try_join!(state.store.actions(&on_filter, None, 1), state.store.actions(&off_filter, None, 1))?;
    let on = on_page.items.into_iter().next();
    let off = off_page.items.into_iter().next();
    Ok(match (on, off) {
        (Some(a), Some(b)) if b.updated_at >= a.updated_at => None,
        (on, _) => on,
    })
}

/// `GET /devices/{id}`: facts, state, the actions a responder may take,
/// and the latest actions and alerts.
pub async fn show(State(state): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, &format!("/devices/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    device_page(&state, &op, &raw, None).await
}

/// The device page; `error` is a status and a refusal to show above it.
async fn device_page(state: &AppState, op: &Operator, raw: &str, error: Option<(StatusCode, &str)>) -> Response {
    let not_found = |op: &Operator| {
        page(
            StatusCode::NOT_FOUND,
            layout(
                "No such device",
                Some(op),
                &op.csrf_token,
                html! { h1 { "No such device" } p { a href="/devices" { "All devices" } } },
            ),
        )
    };
    let Ok(id) = raw.parse::<Uuid>() else { return not_found(op) };
    let loaded = async {
        let Some(device) = state.store.device(id).await? else { return Ok(None) };
        let actions = state.store.actions(&ActionFilter { device: Some(id), ..Default::default() }, None, 20).await?;
        let alerts = state.store.alerts(&AlertFilter { device: Some(id), ..Default::default() }, None, 20).await?;
        let isolated = in_effect(state, id, ActionKind::Isolate, ActionKind::ReleaseIsolation).await?;
        let restricted = in_effect(state, id, ActionKind::RestrictCode, ActionKind::ReleaseCode).await?;
        let level = state.store.device_group(&device.group).await?.map(|g| g.automation_level).unwrap_or_default();
        Ok::<_, StoreError>(Some((device, actions.items, alerts.items, isolated, restricted, level)))
    };
    let (d, actions, alerts, isolated, restricted, level) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(op),
        Err(e) => return db_error("device page", e),
    };
    let status = status_of(state, &d);
    let session = state.gateway.session(&d.id);
    let since = |a: &Action| format!("since {} (action ", rfc3339(a.updated_at));
    let body = html! {
        p { a href="/devices" { "← Devices" } }
        h1 { (d.hostname) " " span class=(format!("badge {status}")) { (status) } }
        @if let Some((_, e)) = error { p.error role="alert" { (e) } }
        section #live-state data-live {
            dl.facts {
                dt { "Network" } dd {
                    @if let Some(a) = &isolated {
                        span.badge.isolated { "isolated" } " " (since(a)) a href=(format!("/actions/{}", a.id)) { "view" } ")"
                    } @else { "not isolated" }
                }
                dt { "Code execution" } dd {
                    @if let Some(a) = &restricted {
                        span.badge.isolated { "restricted" } " " (since(a)) a href=(format!("/actions/{}", a.id)) { "view" } ")"
                    } @else { "not restricted" }
                }
                dt { "Device id" } dd { code { (d.id) } }
                dt { "Group" } dd { (d.group) " (automation level " (level.replace('_', " ")) ")" }
                dt { "OS" } dd { (d.os) }
                dt { "Kernel" } dd { (d.kernel) }
                dt { "IP" } dd { (session.as_ref().map(|s| s.peer.ip().to_string()).unwrap_or_else(|| d.ip.clone())) }
                dt { "Agent version" } dd { (d.agent_version) }
                dt { "Enrolled" } dd { (rfc3339(d.enrolled_at)) }
                dt { "Last seen" } dd { (when(session.as_ref().map(|s| s.last_seen).or(d.last_seen))) }
                dt { "Certificate expires" } dd { (rfc3339(d.cert_not_after)) }
                dt { "Rules" } dd {
                    @if d.rules_version.is_empty() { "none received yet" } @else { (d.rules_version) }
                    @if let Some(e) = &d.rules_error { " — " span.error { (e) } }
                }
            }
        }
        @if op.can(Role::Responder) && d.status == DeviceStatus::Active { (action_bar(op, &d, isolated.is_some(), restricted.is_some())) }
        section #live-history data-live {
            h2 { "Latest actions" }
            @if !actions.is_empty() { table.list {
                thead { tr { th { "Requested" } th { "Kind" } th { "Status" } th { "By" } th { "Comment" } } }
                tbody {
                    @for a in &actions {
                        tr {
                            td { (rfc3339(a.created_at)) }
                            td { a href=(format!("/actions/{}", a.id)) { (a.kind.as_str()) } }
                            td { span class=(format!("badge {}", a.status.as_str())) { (a.status.as_str()) } }
                            td { (a.requestor) }
                            td { (a.comment) }
                        }
                    }
                }
            } }
            @if actions.is_empty() { p { "No actions yet." } }
            h2 { "Latest alerts" }
            @if !alerts.is_empty() { table.list {
                thead { tr { th { "Last seen" } th { "Severity" } th { "Rule" } th { "Status" } } }
                tbody {
                    @for a in &alerts {
                        tr {
                            td { (rfc3339(a.last_seen)) }
                            td { (a.severity.as_str()) }
                            td { (a.rule) }
                            td { (a.status.as_str()) }
                        }
                    }
                }
            } }
            @if alerts.is_empty() { p { "No alerts." } }
        }
    };
    let status = error.map_or(StatusCode::OK, |(s, _)| s);
    page(status, layout(&d.hostname, Some(op), &op.csrf_token, body))
}

/// The responder's actions on a device. Every one asks why; offboarding
/// asks for the host name typed out.
fn action_bar(op: &Operator, d: &Device, isolated: bool, restricted: bool) -> Markup {
    let to = format!("/devices/{}/actions", d.id);
    let csrf = html! { input type="hidden" name="csrf_token" value=(op.csrf_token); };
    let comment = |id: &str| {
        html! {
            label for=(id) { "Comment (required)" }
            input id=(id) name="comment" type="text" required placeholder="why";
        }
    };
    html! {
        section.actions aria-labelledby="take-action" {
            h2 #take-action { "Take action" }
            form.action-bar method="post" action=(to) {
                (csrf) (comment("action-comment"))
                div.buttons {
                    @if isolated {
                        button type="submit" name="kind" value="release_isolation" { "Release from isolation" }
                    } @else {
                        button type="submit" name="kind" value="isolate" { "Isolate device" }
                    }
                    @if restricted {
                        button type="submit" name="kind" value="release_code" { "Remove app restriction" }
                    } @else {
                        button type="submit" name="kind" value="restrict_code" { "Restrict app execution" }
                    }
                    button type="submit" name="kind" value="quick_scan" { "Quick scan" }
                    button type="submit" name="kind" value="full_scan" { "Full scan" }
                    button type="submit" name="kind" value="collect_package" { "Collect investigation package" }
                }
            }
            form.action-bar method="post" action=(to) {
                (csrf) input type="hidden" name="kind" value="stop_and_quarantine";
                label for="quarantine-file" { "File: absolute path or SHA-256" }
                input #quarantine-file name="file" type="text" required;
                (comment("quarantine-comment"))
                div.buttons { button type="submit" { "Stop and quarantine file" } }
            }
            form.action-bar.danger method="post" action=(to) {
                (csrf) input type="hidden" name="kind" value="offboard";
                label for="offboard-confirm" { "Type the host name " strong { (d.hostname) } " to offboard" }
                input #offboard-confirm name="confirm_hostname" type="text" required autocomplete="off";
                (comment("offboard-comment"))
                div.buttons { button type="submit" { "Offboard device" } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    csrf_token: String,
    /// An action kind, or `quick_scan` / `full_scan`.
    kind: String,
    comment: String,
    /// `stop_and_quarantine`: an absolute path or a SHA-256.
    file: String,
    /// `offboard`: the device's host name, typed.
    confirm_hostname: String,
}

/// A refused request: audited, and the device page saying why.
async fn refused(state: &AppState, op: &Operator, device: Uuid, status: StatusCode, message: String) -> Response {
    let target = format!("/devices/{device}/actions");
    audit(&state.store, &op.user, "POST", &target, status.as_str(), &message).await;
    device_page(state, op, &device.to_string(), Some((status, &message))).await
}

/// `POST /devices/{id}/actions`: request an action as the signed-in
/// person (the API's pipeline: role, comment, approval policy), then show
/// it in the action center.
pub async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let op = match signed_in(&state, &headers, &format!("/devices/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if !csrf_ok(&op, &headers, &form.csrf_token) {
        return forbidden("The request did not carry this session's CSRF token.");
    }
    let Ok(device) = raw.parse::<Uuid>() else { return device_page(&state, &op, &raw, None).await };
    let refuse = |status: StatusCode, message: String| refused(&state, &op, device, status, message);
    let file = form.file.trim();
    let (kind, params) = match form.kind.as_str() {
        "isolate" => (ActionKind::Isolate, json!({ "mode": "full" })),
        "quick_scan" => (ActionKind::Scan, json!({ "mode": "quick" })),
        "full_scan" => (ActionKind::Scan, json!({ "mode": "full" })),
        "stop_and_quarantine" if file.len() == 64 && file.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (ActionKind::StopAndQuarantine, json!({ "sha256": file.to_ascii_lowercase() }))
        }
        "stop_and_quarantine" => (ActionKind::StopAndQuarantine, json!({ "path": file })),
        "offboard" => {
            let hostname = match state.store.device(device).await {
                Ok(d) => d.map(|d| d.hostname).unwrap_or_default(),
                Err(e) => return db_error("device lookup", e),
            };
            if form.confirm_hostname.trim() != hostname || hostname.is_empty() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "Not offboarded: the host name typed does not match this device's.".into(),
                )
                .await;
            }
            (ActionKind::Offboard, json!({}))
        }
        other => match ActionKind::ALL.into_iter().find(|k| k.as_str() == other) {
            Some(
                kind @ (ActionKind::ReleaseIsolation
                | ActionKind::RestrictCode
                | ActionKind::ReleaseCode
                | ActionKind::CollectPackage),
            ) => (kind, json!({})),
            _ => return refuse(StatusCode::BAD_REQUEST, format!("The console offers no action {other:?}.")).await,
        },
    };
    let caller = op.caller();
    let who = caller.requestor();
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
        Ok((action, created)) => {
            let detail = format!("action={} kind={kind} device={device} created={created} via console", action.id);
            audit(&state.store, &op.user, "POST", &format!("/devices/{device}/actions"), "ok", &detail).await;
            let done = if created { "requested" } else { "existing" };
            Redirect::to(&format!("/actions/{}?done={done}", action.id)).into_response()
        }
        Err(ActionError::Store(e)) => db_error("action request", e),
        Err(e) => {
            let (status, message) = super::actions::refusal(&e);
            refuse(status, message).await
        }
    }
}
