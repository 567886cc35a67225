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

use super::{audit, changing, db_error, layout, page, signed_in, url_encode, Operator};
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
    let mut query = DeviceQuery {
        text,
        group: q.group.trim(),
        status: registry,
        sort: sort_of(&q.sort),
        descending: q.order == "desc",
        offset: 0,
        limit: 0,
    };
    let requested = q.page.parse::<usize>().unwrap_or(1).max(1);
    // The database pages what it can filter alone; being online (this
    // process's sessions) and containment (the action history) filter the
    // whole match here first.
    let loaded = async {
        let groups = state.store.device_groups().await?;
        if session.is_none() && q.containment.is_empty() {
            let total = usize::try_from(state.store.count_devices(&query).await?).unwrap_or(usize::MAX);
            let pages = total.div_ceil(PAGE).max(1);
            let current = requested.min(pages);
            query.offset = u32::try_from((current - 1) * PAGE).unwrap_or(u32::MAX);
            query.limit = PAGE as u32;
            let shown = state.store.find_devices(&query).await?;
            let ids: Vec<Uuid> = shown.iter().map(|d| d.id).collect();
            let contained = state.store.containment(Some(&ids)).await?;
            return Ok::<_, StoreError>((groups, total, current, shown, contained));
        }
        let contained = state.store.containment(None).await?;
        let found: Vec<Device> = state
            .store
            .find_devices(&query)
            .await?
            .into_iter()
            .filter(|d| session.is_none_or(|online| state.gateway.session(&d.id).is_some() == online))
            .filter(|d| match q.containment.as_str() {
                "isolated" => contained.get(&d.id).is_some_and(|c| c.isolated),
                "restricted" => contained.get(&d.id).is_some_and(|c| c.restricted),
                _ => true,
            })
            .collect();
        let total = found.len();
        let current = requested.min(total.div_ceil(PAGE).max(1));
        let shown = found.into_iter().skip((current - 1) * PAGE).take(PAGE).collect();
        Ok((groups, total, current, shown, contained))
    };
    let (groups, total, current, shown, contained) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("device search", e),
    };
    let shown: Vec<Device> = shown;
    let pages = total.div_ceil(PAGE).max(1);
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
            (total) @if total == 1 { " device" } @else { " devices" }
            @if total > PAGE { " · page " (current) " of " (pages) }
        }
        @if total > 0 { table.list {
            thead { tr { th { "Host name" } th { "Status" } th { "Group" } th { "IP" } th { "OS" } th { "Agent" } th { "Last seen" } } }
            tbody {
                @for d in &shown {
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
        @if total == 0 { p { "No device matches." } }
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

/// A device's actions and alerts, newest first, as one timeline.
enum Event<'a> {
    Action(&'a Action),
    Alert(&'a crate::store::Alert),
}

impl Event<'_> {
    fn at(&self) -> i64 {
        match self {
            Event::Action(a) => a.created_at,
            Event::Alert(a) => a.last_seen,
        }
    }
}

/// The device page; `error` is a status, a refusal to show above it, and
/// the form as it was typed.
async fn device_page(
    state: &AppState,
    op: &Operator,
    raw: &str,
    error: Option<(StatusCode, &str, &ActionForm)>,
) -> Response {
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
        let packages = state
            .store
            .actions(
                &ActionFilter {
                    device: Some(id),
                    kind: Some(ActionKind::CollectPackage),
                    statuses: vec![ActionStatus::Succeeded],
                    ..Default::default()
                },
                None,
                10,
            )
            .await?;
        let samples: Vec<_> =
            state.store.samples(1000).await?.into_iter().filter(|s| s.device_id == id.to_string()).collect();
        Ok::<_, StoreError>(Some((
            device,
            actions.items,
            alerts.items,
            isolated,
            restricted,
            level,
            packages.items,
            samples,
        )))
    };
    let (d, actions, alerts, isolated, restricted, level, packages, samples) = match loaded.await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(op),
        Err(e) => return db_error("device page", e),
    };
    let status = status_of(state, &d);
    let session = state.gateway.session(&d.id);
    let since = |a: &Action| format!("since {} (action ", rfc3339(a.updated_at));
    let offers_actions = op.can(Role::Responder) && d.status == DeviceStatus::Active;
    let mut events: Vec<Event> = actions.iter().map(Event::Action).chain(alerts.iter().map(Event::Alert)).collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at()));
    let body = html! {
        p { a href="/devices" { "← Devices" } }
        h1 { (d.hostname) " " span class=(format!("badge {status}")) { (status) } }
        @if let Some((_, e, _)) = error.filter(|_| !offers_actions) { p.error role="alert" { (e) } }
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
                @if let Some(domains) = &d.mail_domains {
                    dt { "Mail host" } dd {
                        "Dovecot · internal domains: "
                        @if domains.is_empty() { "none declared" } @else { (domains.join(", ")) }
                        " · " a href="/mail" { "Mail explorer" }
                    }
                }
                dt { "Enrolled" } dd { (rfc3339(d.enrolled_at)) }
                dt { "Last seen" } dd { (when(session.as_ref().map(|s| s.last_seen).or(d.last_seen))) }
                dt { "Certificate expires" } dd { (rfc3339(d.cert_not_after)) }
                dt { "Rules" } dd {
                    @if d.rules_version.is_empty() { "none received yet" } @else { (d.rules_version) }
                    @if let Some(e) = &d.rules_error { " — " span.error { (e) } }
                }
            }
        }
        @if offers_actions {
            (action_bar(op, &d, isolated.is_some(), restricted.is_some(), error.map(|(_, message, typed)| (typed, message))))
        }
        @if !packages.is_empty() || !samples.is_empty() {
            section #files {
                h2 { "Packages and samples" }
                ul {
                    @for p in &packages {
                        li { "Investigation package of " (rfc3339(p.updated_at)) " — "
                            @if op.can(Role::Responder) { a href=(format!("/actions/{}/package", p.id)) download { "download" } }
                            @else { "a responder can download it" } }
                    }
                    @for smp in &samples {
                        li { "Sample " code { (smp.path) } " (" (smp.size) " bytes, SHA-256 " code { (smp.sha256.get(..12).unwrap_or(&smp.sha256)) } "…) — "
                            @if op.can(Role::Responder) { a href=(format!("/samples/{}", smp.sha256)) download { "download" } " (encrypted ZIP, password " code { (crate::uploads::SAMPLE_PASSWORD) } ")" }
                            @else { "a responder can download it" } }
                    }
                }
            }
        }
        section #live-history data-live {
            h2 { "Timeline" }
            @if events.is_empty() { p { "No actions or alerts yet." } }
            @if !events.is_empty() { table.list {
                thead { tr { th { "When" } th { "What" } th { "Status" } th { "By" } th { "Detail" } } }
                tbody {
                    @for e in &events {
                        @match e {
                            Event::Action(a) => tr {
                                td { (rfc3339(a.created_at)) }
                                td { "Action " a href=(format!("/actions/{}", a.id)) { (a.kind.as_str()) } }
                                td { span class=(format!("badge {}", a.status.as_str())) { (a.status.as_str()) } }
                                td { (a.requestor) }
                                td { (a.comment) }
                            },
                            Event::Alert(a) => tr {
                                td { (rfc3339(a.last_seen)) }
                                td { "Alert " a href=(format!("/alerts/{}", a.id)) { (a.rule) } }
                                td { span class=(format!("badge {}", a.severity.as_str())) { (a.severity.as_str()) } " " (a.status.as_str()) }
                                td { (a.source) }
                                td { code { (a.path) } }
                            },
                        }
                    }
                }
            } }
        }
    };
    let status = error.map_or(StatusCode::OK, |(s, _, _)| s);
    page(status, layout(&d.hostname, Some(op), &op.csrf_token, body))
}

/// The responder's actions on a device. Every one asks why; offboarding
/// asks for the host name typed out. After a refusal, `refused` fills the
/// form it came from again and says why in it.
fn action_bar(
    op: &Operator,
    d: &Device,
    isolated: bool,
    restricted: bool,
    refused: Option<(&ActionForm, &str)>,
) -> Markup {
    let typed = refused.map(|(form, _)| form);
    let to = format!("/devices/{}/actions", d.id);
    let csrf = html! { input type="hidden" name="csrf_token" value=(op.csrf_token); };
    // What was typed, for the form whose kinds include the refused one.
    let kept = |kinds: &[&str], field: fn(&ActionForm) -> &str| -> String {
        typed.filter(|t| kinds.contains(&t.kind.as_str())).map(field).unwrap_or_default().to_string()
    };
    let comment = |id: &str, kinds: &[&str]| {
        html! {
            label for=(id) { "Comment (required)" }
            input id=(id) name="comment" type="text" required placeholder="why" value=(kept(kinds, |t| &t.comment));
            @if let Some((_, why)) = refused.filter(|(t, _)| kinds.contains(&t.kind.as_str())) {
                p.error role="alert" { (why) }
            }
        }
    };
    const MAIN: [&str; 7] =
        ["isolate", "release_isolation", "restrict_code", "release_code", "quick_scan", "full_scan", "collect_package"];
    html! {
        section.actions aria-labelledby="take-action" {
            h2 #take-action { "Take action" }
            form.action-bar method="post" action=(to) {
                (csrf) (comment("action-comment", &MAIN))
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
            details open[typed.is_some_and(|t| t.kind != "offboard" && !MAIN.contains(&t.kind.as_str()))] {
                summary { "More actions: selective isolation, scan paths, kill a process, quarantine a file, request a sample" }
                @if !isolated {
                    form.action-bar method="post" action=(to) {
                        (csrf) input type="hidden" name="kind" value="isolate_selective";
                        label for="exclusions" { "Keep reachable (one per line: cidr=NET[,protocol=tcp|udp|any][,port=N][,direction=outbound|inbound|both])" }
                        textarea #exclusions name="exclusions" rows="2" cols="60" { (kept(&["isolate_selective"], |t| &t.exclusions)) }
                        label { input type="checkbox" name="allow_dns" value="1" checked[typed.is_some_and(|t| t.allow_dns == "1")]; " DNS" }
                        label { input type="checkbox" name="allow_dhcp" value="1" checked[typed.is_some_and(|t| t.allow_dhcp == "1")]; " DHCP" }
                        (comment("selective-comment", &["isolate_selective"]))
                        div.buttons { button type="submit" { "Isolate selectively" } }
                    }
                }
                form.action-bar method="post" action=(to) {
                    (csrf) input type="hidden" name="kind" value="path_scan";
                    label for="scan-paths" { "Paths to scan (absolute, one per line)" }
                    textarea #scan-paths name="paths" rows="2" cols="60" required { (kept(&["path_scan"], |t| &t.paths)) }
                    (comment("scan-comment", &["path_scan"]))
                    div.buttons { button type="submit" { "Scan paths" } }
                }
                form.action-bar method="post" action=(to) {
                    (csrf) input type="hidden" name="kind" value="kill_process";
                    label for="kill-target" { "Process: PID, or SHA-256 of its executable" }
                    input #kill-target name="process" type="text" required value=(kept(&["kill_process"], |t| &t.process));
                    (comment("kill-comment", &["kill_process"]))
                    div.buttons { button type="submit" { "Kill process" } }
                }
                form.action-bar method="post" action=(to) {
                    (csrf) input type="hidden" name="kind" value="stop_and_quarantine";
                    label for="quarantine-file" { "File: absolute path or SHA-256" }
                    input #quarantine-file name="file" type="text" required value=(kept(&["stop_and_quarantine"], |t| &t.file));
                    (comment("quarantine-comment", &["stop_and_quarantine"]))
                    div.buttons { button type="submit" { "Stop and quarantine file" } }
                }
                form.action-bar method="post" action=(to) {
                    (csrf) input type="hidden" name="kind" value="request_sample";
                    label for="sample-path" { "File to collect (absolute path)" }
                    input #sample-path name="file" type="text" required value=(kept(&["request_sample"], |t| &t.file));
                    (comment("sample-comment", &["request_sample"]))
                    div.buttons { button type="submit" { "Request sample" } }
                }
            }
            form.action-bar.danger method="post" action=(to) {
                (csrf) input type="hidden" name="kind" value="offboard";
                label for="offboard-confirm" { "Type the host name " strong { (d.hostname) } " to offboard" }
                input #offboard-confirm name="confirm_hostname" type="text" required autocomplete="off"
                    value=(kept(&["offboard"], |t| &t.confirm_hostname));
                (comment("offboard-comment", &["offboard"]))
                div.buttons { button type="submit" { "Offboard device" } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    csrf_token: String,
    /// An action kind, or one of the console's own: `quick_scan`,
    /// `full_scan`, `path_scan`, `isolate_selective`.
    kind: String,
    comment: String,
    /// `stop_and_quarantine`: an absolute path or a SHA-256;
    /// `request_sample`: an absolute path.
    file: String,
    /// `kill_process`: a PID or an executable's SHA-256.
    process: String,
    /// `path_scan`: one absolute path a line.
    paths: String,
    /// `isolate_selective`: one exclusion a line.
    exclusions: String,
    allow_dns: String,
    allow_dhcp: String,
    /// `offboard`: the device's host name, typed.
    confirm_hostname: String,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The action kind and parameters a form asks for (the parameters are
/// checked against the kind's type by the action center).
fn requested(form: &ActionForm) -> Result<(ActionKind, serde_json::Value), String> {
    let lines = |s: &str| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>();
    let file = form.file.trim();
    Ok(match form.kind.as_str() {
        "isolate" => (ActionKind::Isolate, json!({ "mode": "full" })),
        "isolate_selective" => {
            let exclusions = lines(&form.exclusions)
                .iter()
                .map(|l| crate::actions::parse_exclusion(l))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("Exclusion {e}"))?;
            let params = json!({ "mode": "selective", "exclusions": exclusions,
                "allow_dns": form.allow_dns == "1", "allow_dhcp": form.allow_dhcp == "1" });
            (ActionKind::Isolate, params)
        }
        "quick_scan" => (ActionKind::Scan, json!({ "mode": "quick" })),
        "full_scan" => (ActionKind::Scan, json!({ "mode": "full" })),
        "path_scan" => (ActionKind::Scan, json!({ "mode": "paths", "paths": lines(&form.paths) })),
        "kill_process" => {
            let target = form.process.trim();
            match target.parse::<u32>() {
                Ok(pid) => (ActionKind::KillProcess, json!({ "pid": pid })),
                Err(_) if is_sha256(target) => {
                    (ActionKind::KillProcess, json!({ "sha256": target.to_ascii_lowercase() }))
                }
                Err(_) => return Err(format!("{target:?} is neither a PID nor a SHA-256.")),
            }
        }
        "stop_and_quarantine" if is_sha256(file) => {
            (ActionKind::StopAndQuarantine, json!({ "sha256": file.to_ascii_lowercase() }))
        }
        "stop_and_quarantine" => (ActionKind::StopAndQuarantine, json!({ "path": file })),
        "request_sample" => (ActionKind::RequestSample, json!({ "path": file })),
        "offboard" => (ActionKind::Offboard, json!({})),
        other => match ActionKind::ALL.into_iter().find(|k| k.as_str() == other) {
            Some(
                kind @ (ActionKind::ReleaseIsolation
                | ActionKind::RestrictCode
                | ActionKind::ReleaseCode
                | ActionKind::CollectPackage),
            ) => (kind, json!({})),
            _ => return Err(format!("The console offers no action {other:?}.")),
        },
    })
}

/// A refused request: audited, and the device page saying why, with what
/// was typed back in its form.
async fn refused(
    state: &AppState,
    op: &Operator,
    device: Uuid,
    form: &ActionForm,
    status: StatusCode,
    message: String,
) -> Response {
    let target = format!("/devices/{device}/actions");
    audit(&state.store, &op.user, "POST", &target, status.as_str(), &message).await;
    device_page(state, op, &device.to_string(), Some((status, &message, form))).await
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
    let op = match changing(&state, &headers, &format!("/devices/{}", url_encode(&raw)), &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let Ok(device) = raw.parse::<Uuid>() else { return device_page(&state, &op, &raw, None).await };
    let refuse = |status: StatusCode, message: String| refused(&state, &op, device, &form, status, message);
    if !op.can(Role::Responder) {
        return refuse(StatusCode::FORBIDDEN, "Actions need the responder role.".into()).await;
    }
    let (kind, params) = match requested(&form) {
        Ok(r) => r,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message).await,
    };
    if kind == ActionKind::Offboard {
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
    }
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
