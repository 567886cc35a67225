//! Devices: the searchable list, and one device's facts with its recent
//! actions and alerts.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::{layout, page, signed_in, url_encode, Operator};
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::store::{ActionFilter, AlertFilter, Device, DeviceQuery, DeviceSort, DeviceStatus};

/// Rows a page shows.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    group: String,
    /// online, offline, revoked, offboarded; empty: all.
    status: String,
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
    let (found, groups) = match tokio::try_join!(state.store.find_devices(&query), state.store.device_groups()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "device search failed");
            return page(StatusCode::INTERNAL_SERVER_ERROR, html! { "The database could not be reached." });
        }
    };
    let found: Vec<Device> = match session {
        Some(online) => found.into_iter().filter(|d| state.gateway.session(&d.id).is_some() == online).collect(),
        None => found,
    };
    let pages = found.len().div_ceil(PAGE).max(1);
    let current = q.page.parse::<usize>().unwrap_or(1).clamp(1, pages);
    let shown = &found[(current - 1) * PAGE..(current * PAGE).min(found.len())];
    let link = |p: usize| {
        format!(
            "/devices?q={}&group={}&status={}&sort={}&order={}&page={p}",
            url_encode(text),
            url_encode(&q.group),
            url_encode(&q.status),
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
                        td { span class=(format!("badge {status}")) { (status) } }
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

/// `GET /devices/{id}`: facts, state, and the latest actions and alerts.
pub async fn show(State(state): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> Response {
    let op = match signed_in(&state, &headers, &format!("/devices/{}", url_encode(&raw))).await {
        Ok(op) => op,
        Err(r) => return r,
    };
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
    let Ok(id) = raw.parse::<Uuid>() else { return not_found(&op) };
    let loaded = async {
        let Some(device) = state.store.device(id).await? else { return Ok(None) };
        let actions = state.store.actions(&ActionFilter { device: Some(id), ..Default::default() }, None, 20).await?;
        let alerts = state.store.alerts(&AlertFilter { device: Some(id), ..Default::default() }, None, 20).await?;
        Ok::<_, crate::store::StoreError>(Some((device, actions.items, alerts.items)))
    };
    let (d, actions, alerts) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(&op),
        Err(e) => {
            tracing::error!(error = %e, "device page failed");
            return page(StatusCode::INTERNAL_SERVER_ERROR, html! { "The database could not be reached." });
        }
    };
    let status = status_of(&state, &d);
    let session = state.gateway.session(&d.id);
    let body = html! {
        p { a href="/devices" { "← Devices" } }
        h1 { (d.hostname) " " span class=(format!("badge {status}")) { (status) } }
        dl.facts {
            dt { "Device id" } dd { code { (d.id) } }
            dt { "Group" } dd { (d.group) }
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
        h2 { "Latest actions" }
        @if !actions.is_empty() { table.list {
            thead { tr { th { "Requested" } th { "Kind" } th { "Status" } th { "By" } th { "Comment" } } }
            tbody {
                @for a in &actions {
                    tr {
                        td { (rfc3339(a.created_at)) }
                        td { (a.kind.as_str()) }
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
    };
    page(StatusCode::OK, layout(&d.hostname, Some(&op), &op.csrf_token, body))
}
