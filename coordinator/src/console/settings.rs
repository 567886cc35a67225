//! Settings, for admins: device groups and their automation levels,
//! enrollment tokens (with the command to run on a device), users, API
//! tokens, and the audit log with its CSV export. Each change calls the
//! same function as its API route; a secret (a token, a generated
//! password) is shown once, in the answer to the POST, never in a URL.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{audit, changing, db_error, forbidden, layout, page, signed_in, url_encode, Operator};
use crate::api::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::investigations::Level;
use crate::store::{AuditFilter, Role, StoreError};

/// The signed-in admin (of a change carrying `token`, the CSRF token),
/// or the response that refuses everyone else.
async fn admin(state: &AppState, headers: &HeaderMap, path: &str, token: Option<&str>) -> Result<Operator, Response> {
    let op = match token {
        Some(token) => changing(state, headers, path, token).await?,
        None => signed_in(state, headers, path).await?,
    };
    if op.can(Role::Admin) {
        Ok(op)
    } else {
        Err(forbidden("Settings need the admin role."))
    }
}

fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge {text}")) { (text.replace('_', " ")) } }
}

/// A one-button form posting to `to` with the CSRF token.
fn button(op: &Operator, to: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(to) {
            input type="hidden" name="csrf_token" value=(op.csrf_token);
            button type="submit" { (label) }
        }
    }
}

/// `GET /settings`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match admin(&state, &headers, "/settings", None).await {
        Ok(op) => settings_page(&state, &op, None, &SettingsForm::default()).await,
        Err(r) => r,
    }
}

/// The settings page, with `notice` (status and what to say) on top.
/// What a change said, and in which section of the page (`groups`,
/// `enrollment`, `users`, `api-tokens`) it goes.
type Notice = (StatusCode, Markup, &'static str);

/// The settings page; `notice` is shown in its section, and a refused
/// create form keeps what was `typed`.
async fn settings_page(state: &AppState, op: &Operator, notice: Option<Notice>, typed: &SettingsForm) -> Response {
    let loaded = async {
        let groups = state.store.device_groups().await?;
        let tokens = state.store.enrollment_tokens(None, 100).await?.items;
        let users = state.store.users().await?;
        let api_tokens = state.store.api_tokens().await?;
        Ok::<_, StoreError>((groups, tokens, users, api_tokens))
    };
    let (groups, tokens, users, api_tokens) = match loaded.await {
        Ok(r) => r,
        Err(e) => return db_error("settings", e),
    };
    let csrf = html! { input type="hidden" name="csrf_token" value=(op.csrf_token); };
    let empty = SettingsForm::default();
    let typed_for = |section: &str| if notice.as_ref().is_some_and(|n| n.2 == section) { typed } else { &empty };
    let said = |notice: &Option<Notice>, section: &str| {
        html! {
            @if let Some((s, message, _)) = notice.as_ref().filter(|n| n.2 == section) {
                @if *s == StatusCode::OK { div.notice role="status" { (message) } } @else { div.error role="alert" { (message) } }
            }
        }
    };
    let levels = |current: &str| {
        html! { @for l in Level::NAMES { option value=(l) selected[l == current] { (l.replace('_', " ")) } } }
    };
    let body = html! {
        h1 { "Settings" }
        p { a href="/settings/audit" { "Audit log →" } }
        section.panel.wide #groups {
            h2 { "Device groups" } (said(&notice, "groups"))
            table.list {
                thead { tr { th { "Group" } th { "Description" } th { "Automation level" } } }
                tbody { @for g in &groups { tr {
                    td { a href=(format!("/devices?group={}", url_encode(&g.name))) { (g.name) } }
                    td { (g.description) }
                    td { form.inline method="post" action=(format!("/settings/groups/{}", url_encode(&g.name))) {
                        (csrf)
                        select name="automation_level" aria-label=(format!("Automation level of {}", g.name)) { (levels(&g.automation_level)) }
                        button type="submit" { "Save" }
                    } }
                } } }
            }
            form.action-bar method="post" action="/settings/groups" {
                (csrf)
                label for="group-name" { "New group" } input #group-name name="name" type="text" required pattern="[A-Za-z0-9._\\-]{1,64}" value=(typed_for("groups").name);
                label for="group-level" { "Automation level" }
                select #group-level name="automation_level" { (levels(if typed_for("groups").automation_level.is_empty() { "full" } else { &typed_for("groups").automation_level })) }
                button type="submit" { "Create group" }
            }
        }
        section.panel.wide #enrollment {
            h2 { "Enrollment tokens" } (said(&notice, "enrollment"))
            table.list {
                thead { tr { th { "Created" } th { "Group" } th { "State" } th { "Uses left" } th { "Expires" } th { "By" } th {} } }
                tbody { @for t in &tokens { @let st = crate::api::token_state(t); tr {
                    td { (rfc3339(t.created_at)) } td { (t.group) } td { (badge(st)) }
                    td { (t.uses_left) " of " (t.max_uses) } td { (rfc3339(t.expires_at)) } td { (t.created_by) }
                    td { @if st == "active" { (button(op, &format!("/settings/enrollment-tokens/{}/revoke", t.id), "Revoke")) } }
                } } }
            }
            form.action-bar method="post" action="/settings/enrollment-tokens" {
                (csrf)
                label for="token-group" { "Group" } input #token-group name="group" type="text" required value=(if typed_for("enrollment").group.is_empty() { "default" } else { &typed_for("enrollment").group });
                label for="token-uses" { "Uses" } input #token-uses name="max_uses" type="number" min="1" max="1000000" required value=(if typed_for("enrollment").max_uses.is_empty() { "1" } else { &typed_for("enrollment").max_uses });
                label for="token-hours" { "Valid for (hours)" } input #token-hours name="expires_in_hours" type="number" min="1" max="8760" required value=(if typed_for("enrollment").expires_in_hours.is_empty() { "24" } else { &typed_for("enrollment").expires_in_hours });
                button type="submit" { "Create token" }
            }
        }
        section.panel.wide #users {
            h2 { "Users" } (said(&notice, "users"))
            table.list {
                thead { tr { th { "Name" } th { "Role" } th { "State" } th { "Created by" } th { "Password changed" } th {} } }
                tbody { @for u in &users { tr {
                    td { (u.name) } td { (u.role.as_str()) }
                    td { @if u.disabled_at.is_some() { (badge("disabled")) } @else { (badge("enabled")) } }
                    td { (u.created_by) } td { (rfc3339(u.password_changed_at)) }
                    td.row-actions {
                        @if u.disabled_at.is_some() {
                            (button(op, &format!("/settings/users/{}/enable", u.name), "Enable"))
                        } @else if u.name != op.user {
                            (button(op, &format!("/settings/users/{}/disable", u.name), "Disable"))
                        }
                        (button(op, &format!("/settings/users/{}/reset-password", u.name), "Reset password"))
                    }
                } } }
            }
            form.action-bar method="post" action="/settings/users" {
                (csrf)
                label for="user-name" { "New user" } input #user-name name="name" type="text" required pattern="[a-z0-9][a-z0-9._\\-]{0,63}" value=(typed_for("users").name);
                label for="user-role" { "Role" }
                select #user-role name="role" { @for r in ["viewer", "responder", "approver", "admin"] { option value=(r) selected[r == typed_for("users").role] { (r) } } }
                button type="submit" { "Create user" }
            }
            p.hint { "A new user's password is generated and shown once; they change it under Account." }
        }
        section.panel.wide #api-tokens {
            h2 { "API tokens" } (said(&notice, "api-tokens"))
            p.hint { "Create them with " code { "picketctl token create" } ": the secret is shown once, to the terminal." }
            table.list {
                thead { tr { th { "Name" } th { "For" } th { "Role" } th { "Created" } th { "Expires" } th { "State" } th {} } }
                tbody { @for t in &api_tokens { tr {
                    td { (t.name) } td { (t.identity()) } td { (t.role.as_str()) } td { (rfc3339(t.created_at)) }
                    td { (t.expires_at.map(rfc3339).unwrap_or_else(|| "never".into())) }
                    td { @if t.revoked_at.is_some() { (badge("revoked")) } @else { (badge("active")) } }
                    td { @if t.revoked_at.is_none() { (button(op, &format!("/settings/api-tokens/{}/revoke", t.id), "Revoke")) } }
                } } }
            }
        }
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _, _)| *s);
    page(status, layout("Settings", Some(op), &op.csrf_token, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    csrf_token: String,
    name: String,
    automation_level: String,
    group: String,
    max_uses: String,
    expires_in_hours: String,
    role: String,
}

/// `POST /settings/{what}`: create a group, an enrollment token or a user.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(what): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let op = match admin(&state, &headers, "/settings", Some(&form.csrf_token)).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let outcome: Result<(String, Markup), ApiError> = match what.as_str() {
        "groups" => create_group(&state, &form).await,
        "enrollment-tokens" => {
            let number = |s: &str, what: &str| {
                s.trim().parse::<u32>().map_err(|_| ApiError::BadRequest(format!("{what} must be a whole number")))
            };
            match (number(&form.max_uses, "Uses"), number(&form.expires_in_hours, "Hours")) {
                (Ok(uses), Ok(hours)) => {
                    crate::api::issue_enrollment_token(&state, &op.user, form.group.trim(), hours, uses).await.map(|t| {
                        let detail = format!("token_id={} group={} max_uses={uses}", t.token.id, t.token.group);
                        (detail, html! {
                            p { "Enrollment token created for group " strong { (t.token.group) } ". It is shown only now: run this on the device, as root:" }
                            pre.secret { (t.command) }
                        })
                    })
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        "users" => match Role::parse(&form.role) {
            None => Err(ApiError::BadRequest("role: viewer, responder, approver or admin".into())),
            Some(role) => crate::api::add_user(&state, &op.user, form.name.trim(), role, None).await.map(|(u, password)| {
                (format!("user={} role={}", u.name, u.role.as_str()), html! {
                    p { "User " strong { (u.name) } " created with the " (u.role.as_str()) " role. Their password, shown only now:" }
                    pre.secret { (password.unwrap_or_default()) }
                })
            }),
        },
        _ => Err(ApiError::NotFound(format!("nothing to create at /settings/{what}"))),
    };
    finish(&state, &op, &format!("/settings/{what}"), outcome, &form).await
}

async fn create_group(state: &AppState, form: &SettingsForm) -> Result<(String, Markup), ApiError> {
    let name = form.name.trim();
    if !crate::api::valid_group_name(name) {
        return Err(ApiError::BadRequest(crate::api::GROUP_NAME_RULE.into()));
    }
    let level = level(&form.automation_level)?;
    if !state.store.put_device_group(name, level, "", true).await? {
        return Err(ApiError::Conflict(format!("group {name:?} exists")));
    }
    Ok((format!("group {name} automation {level}"), html! { p { "Group " strong { (name) } " created." } }))
}

fn level(s: &str) -> Result<&'static str, ApiError> {
    Level::NAMES
        .into_iter()
        .find(|l| *l == s)
        .ok_or_else(|| ApiError::BadRequest(format!("automation level: one of {}", Level::NAMES.join(", "))))
}

/// Audits the outcome and shows the settings page with it.
async fn finish(
    state: &AppState,
    op: &Operator,
    target: &str,
    outcome: Result<(String, Markup), ApiError>,
    typed: &SettingsForm,
) -> Response {
    // The section of the page the change belongs to.
    let section = match target.split('/').nth(2).unwrap_or_default() {
        "groups" => "groups",
        "enrollment-tokens" => "enrollment",
        "api-tokens" => "api-tokens",
        _ => "users",
    };
    match outcome {
        Ok((detail, message)) => {
            audit(&state.store, &op.user, "POST", target, "ok", &format!("{detail} via console")).await;
            settings_page(state, op, Some((StatusCode::OK, message, section)), &SettingsForm::default()).await
        }
        Err(e) => {
            let status = e.status();
            audit(&state.store, &op.user, "POST", target, status.as_str(), &e.to_string()).await;
            settings_page(state, op, Some((status, html! { p { (e.to_string()) } }, section)), typed).await
        }
    }
}

/// `POST /settings/{what}/{name}` (a group's automation level) and
/// `POST /settings/{what}/{name}/{verb}` (revoke a token; disable,
/// enable or reset a user).
pub async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(parts): Path<Vec<(String, String)>>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let op = match admin(&state, &headers, "/settings", Some(&form.csrf_token)).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let get = |key: &str| parts.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str()).to_string();
    let (what, name, verb) = (get("what"), get("name"), get("verb"));
    let target =
        if verb.is_empty() { format!("/settings/{what}/{name}") } else { format!("/settings/{what}/{name}/{verb}") };
    let caller = op.caller();
    let outcome: Result<(String, Markup), ApiError> = match (what.as_str(), verb.as_str()) {
        ("groups", "") => match level(&form.automation_level) {
            Err(e) => Err(e),
            Ok(level) => match state.store.device_group(&name).await {
                Ok(None) => Err(ApiError::NotFound(format!("no group {name:?}"))),
                Err(e) => Err(ApiError::internal(e)),
                Ok(Some(g)) => state
                    .store
                    .put_device_group(&name, level, &g.description, false)
                    .await
                    .map_err(ApiError::internal)
                    .map(|_| {
                        (format!("group {name} automation {level}"), html! {
                            p { "Group " strong { (name) } " now runs at automation level " strong { (level.replace('_', " ")) } "." }
                        })
                    }),
            },
        },
        ("enrollment-tokens", "revoke") => match state.store.revoke_enrollment_token(&name).await {
            Ok(true) => Ok((format!("token_id={name}"), html! { p { "Enrollment token revoked." } })),
            Ok(false) => Err(ApiError::NotFound(format!("no enrollment token {name:?}"))),
            Err(e) => Err(ApiError::internal(e)),
        },
        ("api-tokens", "revoke") => match state.store.revoke_api_token(&name).await {
            Ok(true) => Ok((format!("api_token={name}"), html! { p { "API token revoked: it stops working with its next request." } })),
            Ok(false) => Err(ApiError::NotFound(format!("no API token {name:?}"))),
            Err(e) => Err(ApiError::internal(e)),
        },
        ("users", "disable") => crate::api::disable_user(&state, &caller.identity, &op.user, &name)
            .await
            .map(|()| (format!("disabled user {name}"), html! { p { "User " strong { (name) } " disabled; their sessions ended." } })),
        ("users", "enable") => crate::api::enable_user(&state, &name)
            .await
            .map(|()| (format!("enabled user {name}"), html! { p { "User " strong { (name) } " enabled." } })),
        ("users", "reset-password") => {
            crate::api::reset_user_password(&state, &op.user, &name, None).await.map(|password| {
                (format!("reset the password of {name}"), html! {
                    p { "New password for " strong { (name) } ", shown only now (their sessions ended):" }
                    pre.secret { (password.unwrap_or_default()) }
                })
            })
        }
        _ => Err(ApiError::NotFound(format!("nothing to do at {target}"))),
    };
    finish(&state, &op, &target, outcome, &SettingsForm::default()).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    cursor: String,
    /// Only this actor's entries.
    actor: String,
    /// Only entries with this text in the action, target, result or detail.
    text: String,
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter<'_> {
        AuditFilter { actor: self.actor.trim(), text: self.text.trim() }
    }

    fn link(&self, cursor: &str) -> String {
        let mut url = format!("?actor={}&text={}", url_encode(self.actor.trim()), url_encode(self.text.trim()));
        if !cursor.is_empty() {
            url.push_str(&format!("&cursor={}", url_encode(cursor)));
        }
        url
    }
}

/// `GET /settings/audit`: the audit log, newest first, 100 a page.
pub async fn audit_log(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Response {
    let op = match admin(&state, &headers, "/settings/audit", None).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let cursor = q.cursor.parse::<i64>().ok();
    let found = match state.store.audit_search(&q.filter(), cursor, 100).await {
        Ok(f) => f,
        Err(e) => return db_error("audit log", e),
    };
    let body = html! {
        p { a href="/settings" { "← Settings" } }
        h1 { "Audit log" }
        form.filters method="get" action="/settings/audit" role="search" {
            label for="actor" { "Who" input #actor name="actor" type="text" value=(q.actor); }
            label for="text" { "Containing" input #text name="text" type="search" value=(q.text) placeholder="action, path, result or detail"; }
            button type="submit" { "Apply" }
            a.export href=(format!("/settings/audit.csv{}", q.link(""))) download { "Export CSV (every match)" }
        }
        table.list {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Result" } th { "Detail" } } }
            tbody { @for e in &found.items { tr {
                td { (rfc3339(e.at)) } td { (e.actor) } td { (e.action) } td { code { (e.target) } }
                td { (e.result) } td { (e.detail) }
            } } }
        }
        nav.pager aria-label="Pages" {
            @if cursor.is_some() { a href=(format!("/settings/audit{}", q.link(""))) { "← Newest" } }
            @if let Some(next) = &found.next_cursor { a rel="next" href=(format!("/settings/audit{}", q.link(next))) { "Older →" } }
        }
    };
    page(StatusCode::OK, layout("Audit log", Some(&op), &op.csrf_token, body))
}

/// `GET /settings/audit.csv`: every entry matching the filters as CSV,
/// newest first.
pub async fn audit_csv(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Response {
    if let Err(r) = admin(&state, &headers, "/settings/audit", None).await {
        return r;
    }
    let mut out = String::from("id,at,actor,action,target,result,detail\n");
    let mut cursor = None;
    loop {
        let found = match state.store.audit_search(&q.filter(), cursor, 1000).await {
            Ok(f) => f,
            Err(e) => return db_error("audit export", e),
        };
        for e in &found.items {
            let fields = [
                e.id.to_string(),
                rfc3339(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.result.clone(),
                e.detail.clone(),
            ];
            out.push_str(&fields.iter().map(|f| crate::api::csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        match found.next_cursor.and_then(|c| c.parse().ok()) {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"picket-audit.csv\""),
        ],
        out,
    )
        .into_response()
}
