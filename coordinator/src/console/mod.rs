//! The operator console: server-rendered pages on the API's HTTPS
//! listener, calling the coordinator's services directly (never the API
//! over HTTP).
//!
//! Every page is built with `maud`, which escapes every value it inserts;
//! every response carries a Content-Security-Policy that allows no inline
//! script or style and nothing from other origins, and every asset is
//! embedded in the binary. Sign-in, sessions, CSRF and throttling are in
//! [`session`]; roles are the API's (a page hides what a role cannot do,
//! but the handler is the check).

mod actions;
mod alerts;
mod detection;
mod devices;
mod mail;
pub mod session;
mod settings;

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use crate::api::AppState;
use crate::store::{NewAudit, Store};
use crate::users::{decoy_hash, verify_blocking};
use session::{NoSession, Operator, Throttle, Timeouts, LOGIN_COOKIE, SESSION_COOKIE};

/// What the console keeps between requests.
pub struct Console {
    pub timeouts: Timeouts,
    pub throttle: Throttle,
}

impl Console {
    pub fn new(config: &crate::config::ConsoleConfig) -> Self {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            timeouts: Timeouts { idle_ms: ms(config.idle_timeout_secs), absolute_ms: ms(config.absolute_timeout_secs) },
            throttle: Throttle::default(),
        }
    }
}

/// No script or style but the console's own files; no framing; forms
/// post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes (merged into the API router); `upload_bytes`
/// bounds a rule upload, as on the API's route.
pub fn router(upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/devices", get(devices::list))
        .route("/devices/{id}", get(devices::show))
        .route("/devices/{id}/actions", axum::routing::post(devices::request))
        .route("/actions", get(actions::list))
        .route("/actions.csv", get(actions::export))
        .route("/actions/decide", axum::routing::post(actions::decide_many))
        .route("/actions/{id}", get(actions::show))
        .route("/actions/{id}/package", get(actions::package))
        .route("/samples/{sha256}", get(actions::sample))
        .route("/actions/{id}/{verb}", axum::routing::post(actions::decide))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::show))
        .route("/alerts/{id}/{what}", axum::routing::post(alerts::triage))
        .route("/detection", get(detection::show))
        .route(
            "/detection/rules",
            axum::routing::post(detection::upload).layer(axum::extract::DefaultBodyLimit::max(upload_bytes)),
        )
        .route("/detection/indicators", axum::routing::post(detection::add))
        .route("/detection/indicators/{sha256}/delete", axum::routing::post(detection::delete))
        .route("/settings", get(settings::show))
        .route("/settings/audit", get(settings::audit_log))
        .route("/settings/audit.csv", get(settings::audit_csv))
        .route("/settings/{what}", axum::routing::post(settings::create))
        .route("/settings/{what}/{name}", axum::routing::post(settings::change))
        .route("/settings/{what}/{name}/{verb}", axum::routing::post(settings::change))
        .route("/investigations", get(alerts::investigations))
        .route("/investigations/{id}", get(alerts::investigation))
        .route("/investigations/{id}/{what}", axum::routing::post(alerts::decide))
        .route("/mail", get(mail::show))
        .route("/mail/links", get(mail::links))
        .route("/mail/search", axum::routing::post(mail::search))
        .route("/mail/searches/{id}", get(mail::results))
        .route("/mail/searches/{id}/act", axum::routing::post(mail::act))
        .route("/account", get(account_page))
        .route("/account/password", axum::routing::post(change_password))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], JS)
        .into_response()
}

/// The 500 page when the database fails, with what failed logged.
fn db_error(what: &str, error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console: {what} failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        layout("Error", None, "", html! { h1 { "Error" } p { "The database could not be reached. Try again." } }),
    )
}

/// The client's address, as the listener saw it.
struct Peer(IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|ConnectInfo(a)| a.ip());
        Ok(Self(addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

async fn audit(store: &Store, actor: &str, action: &str, target: &str, result: &str, detail: &str) {
    let entry = NewAudit { actor, action, target, result, detail };
    if let Err(error) = store.audit(&entry).await {
        tracing::error!(%error, "could not write audit entry");
    }
}

/// The page frame: the CSRF token in a `<meta>`, the navigation, who is
/// signed in, and sign-out.
fn layout(title: &str, op: Option<&Operator>, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · Picket" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Picket" }
                    @if let Some(op) = op {
                        nav aria-label="Main" {
                            a href="/" { "Overview" }
                            a href="/devices" { "Devices" }
                            a href="/actions" { "Action center" }
                            a href="/investigations" { "Investigations" }
                            a href="/alerts" { "Alerts" }
                            a href="/mail" { "Mail" }
                            a href="/detection" { "Detection" }
                            @if op.can(crate::store::Role::Admin) { a href="/settings" { "Settings" } }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf_token" value=(csrf);
                            a.who href="/account" { (op.user) " · " (op.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A local path to return to after sign-in; anything else is `/`.
/// Browsers drop tabs and line ends from URLs and read `\` as `/`, so
/// only visible ASCII without `\` is kept, and never `//` (another host).
pub(super) fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// The signed-in person, or the response that sends the browser to sign
/// in (saying why when the session timed out).
pub async fn signed_in(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Operator, Response> {
    match session::operator(&state.store, state.console.timeouts, headers).await {
        Ok(op) => Ok(op),
        Err(NoSession::Store(e)) => Err(db_error("session lookup", e)),
        Err(why) => {
            let expired = if matches!(why, NoSession::Expired) { "&expired=1" } else { "" };
            let next: String = url_encode(path);
            Err(Redirect::to(&format!("/login?next={next}{expired}")).into_response())
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    changed: Option<String>,
}

fn login_form(csrf: &str, next: &str, user: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        csrf,
        html! {
            section.signin {
                h1 { "Sign in to Picket" }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label for="username" { "User name" }
                    input #username name="username" type="text" autocomplete="username" required value=(user)
                        aria-describedby=[error.map(|_| "login-error")];
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    @if let Some(e) = error { p.error #login-error role="alert" { (e) } }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /login`: the form, with a fresh double-submit token.
async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let csrf = session::random_token();
    let notice = if q.expired.is_some() {
        Some("Your session ended. Sign in again.")
    } else if q.changed.is_some() {
        Some("Password changed. Sign in with the new one.")
    } else {
        None
    };
    let mut response = page(StatusCode::OK, login_form(&csrf, &local_next(q.next.as_deref()), "", None, notice));
    response.headers_mut().append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, &csrf, Some(3600)));
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
}

/// `POST /login`: checks the double-submit token, the throttle, then the
/// password (an unknown or disabled user costs the same hashing time as
/// a wrong password); on success a new session and its cookie.
async fn login(
    State(state): State<AppState>,
    Peer(addr): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_next(form.next.as_deref());
    // Longer than any user name: kept (and throttled) by its first 64
    // characters, and it matches no user.
    let user: String = form.username.trim().chars().take(65).collect();
    let shown_user: String = user.chars().take(64).collect();
    let fresh = session::random_token();
    let again = |status: StatusCode, error: &str| {
        let mut r = page(status, login_form(&fresh, &next, &shown_user, Some(error), None));
        r.headers_mut().append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, &fresh, Some(3600)));
        r
    };
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same(expected, &form.csrf_token) {
        tracing::warn!(%addr, "sign-in without its form's CSRF token refused");
        return again(StatusCode::FORBIDDEN, "The form expired or was not sent from this console. Try again.");
    }
    if let Some(wait) = state.console.throttle.wait(&shown_user, addr) {
        tracing::warn!(user = %shown_user, %addr, "sign-in throttled after repeated failures");
        audit(&state.store, &shown_user, "login_throttled", "/login", "429", &format!("address={addr}")).await;
        let mut r = again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Wait {} s and try again.", wait.as_secs().max(1)),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let record = match state.store.user(&user).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "sign-in: user lookup failed");
            return again(StatusCode::INTERNAL_SERVER_ERROR, "The database could not be reached. Try again.");
        }
    };
    let (hash, enabled) = match &record {
        Some((u, h)) => (h.clone(), u.disabled_at.is_none()),
        None => (decoy_hash().to_string(), false),
    };
    // A password longer than any accepted matches nothing (and is not hashed whole).
    let too_long = form.password.chars().count() > crate::users::MAX_PASSWORD;
    let password: String = form.password.chars().take(crate::users::MAX_PASSWORD).collect();
    let matches = verify_blocking(hash, password).await && !too_long;
    let Some((user_row, _)) = record.filter(|_| matches && enabled) else {
        state.console.throttle.failed(&shown_user, addr);
        let why = if matches { "disabled user" } else { "wrong user name or password" };
        tracing::warn!(user = %shown_user, %addr, why, "console sign-in failed");
        audit(&state.store, &shown_user, "login_failed", "/login", "401", &format!("address={addr} reason={why}"))
            .await;
        return again(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    };
    state.console.throttle.succeeded(&shown_user);
    let secret = session::random_token();
    let csrf = session::random_token();
    let id_hash = crate::store::hash_secret(&secret);
    if let Err(e) = state.store.create_session(&id_hash, &user_row.name, &csrf, &addr.to_string()).await {
        tracing::error!(error = %e, "sign-in: the session could not be stored");
        return again(StatusCode::INTERNAL_SERVER_ERROR, "The database could not be reached. Try again.");
    }
    // Sessions past the absolute timeout are dead; a sign-in clears them out.
    let dead = crate::clock::now_ms().saturating_sub(state.console.timeouts.absolute_ms);
    if let Err(e) = state.store.purge_sessions(dead).await {
        tracing::warn!(error = %e, "could not purge old console sessions");
    }
    tracing::info!(user = %user_row.name, %addr, "console sign-in");
    audit(&state.store, &user_row.name, "login", "/login", "ok", &format!("address={addr}")).await;
    let mut r = Redirect::to(&next).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, &secret, None));
    h.append(header::SET_COOKIE, session::set_cookie(LOGIN_COOKIE, "", Some(0)));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// The CSRF token of a state-changing request: the `X-CSRF-Token` header,
/// else the form field.
fn csrf_ok(op: &Operator, headers: &HeaderMap, form_token: &str) -> bool {
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or(form_token);
    !given.is_empty() && session::same(given, &op.csrf_token)
}

/// The signed-in person of a state-changing request that carries their
/// session's CSRF token (`token`: the form field; the `X-CSRF-Token`
/// header wins); else the response that refuses it (sign-in, or 403).
pub async fn changing(state: &AppState, headers: &HeaderMap, path: &str, token: &str) -> Result<Operator, Response> {
    let op = signed_in(state, headers, path).await?;
    if csrf_ok(&op, headers, token) {
        Ok(op)
    } else {
        tracing::warn!(user = %op.user, path, "console change without its session's CSRF token refused");
        Err(forbidden("The request did not carry this session's CSRF token."))
    }
}

fn forbidden(why: &str) -> Response {
    page(StatusCode::FORBIDDEN, layout("Refused", None, "", html! { h1 { "Refused" } p { (why) } }))
}

/// `POST /logout`: ends the session (CSRF-checked, so no other site can
/// sign anyone out).
async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let op = match changing(&state, &headers, "/", &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    if let Err(e) = state.store.end_session(&op.id_hash).await {
        return db_error("ending the session at sign-out", e);
    }
    audit(&state.store, &op.user, "logout", "/logout", "ok", "").await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, "", Some(0)));
    r
}

/// The account form; `errors` are (field, message), shown beside it.
fn account_form(op: &Operator, errors: &[(&str, &str)]) -> Markup {
    let error = |field: &str| errors.iter().find(|(f, _)| *f == field).map(|(_, m)| *m);
    let field = |id: &'static str, label: &'static str, autocomplete: &'static str| {
        let message = error(id);
        html! {
            label for=(id) { (label) }
            input id=(id) name=(id) type="password" autocomplete=(autocomplete) required
                aria-invalid=[message.map(|_| "true")] aria-describedby=[message.map(|_| format!("{id}-error"))];
            @if let Some(m) = message { p.error id=(format!("{id}-error")) role="alert" { (m) } }
        }
    };
    layout(
        "Account",
        Some(op),
        &op.csrf_token,
        html! {
            h1 { "Account" }
            p { "Signed in as " strong { (op.user) } " with the " strong { (op.role.as_str()) } " role." }
            section.panel {
                h2 { "Change password" }
                form method="post" action="/account/password" {
                    input type="hidden" name="csrf_token" value=(op.csrf_token);
                    (field("current_password", "Current password", "current-password"))
                    (field("new_password", "New password (at least 12 characters)", "new-password"))
                    (field("confirm_password", "New password again", "new-password"))
                    button type="submit" { "Change password" }
                }
            }
        },
    )
}

/// `GET /account`: who is signed in, and the password form.
async fn account_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/account").await {
        Ok(op) => page(StatusCode::OK, account_form(&op, &[])),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /account/password`: the current password (throttled like
/// sign-in), then the new one twice. Every session of the user ends,
/// this one too: the browser signs in again with the new password.
async fn change_password(
    State(state): State<AppState>,
    Peer(addr): Peer,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let op = match changing(&state, &headers, "/account", &form.csrf_token).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let again = |field: &str, message: &str| page(StatusCode::BAD_REQUEST, account_form(&op, &[(field, message)]));
    if let Some(wait) = state.console.throttle.wait(&op.user, addr) {
        let message = format!("Too many wrong passwords. Wait {} s and try again.", wait.as_secs().max(1));
        return page(StatusCode::TOO_MANY_REQUESTS, account_form(&op, &[("current_password", &message)]));
    }
    let hash = match state.store.user(&op.user).await {
        Ok(Some((_, hash))) => hash,
        Ok(None) => return forbidden("This user no longer exists."),
        Err(e) => {
            return db_error("user lookup for a password change", e);
        }
    };
    let current: String = form.current_password.chars().take(crate::users::MAX_PASSWORD).collect();
    if !verify_blocking(hash, current).await {
        state.console.throttle.failed(&op.user, addr);
        audit(&state.store, &op.user, "password_change_failed", "/account/password", "401", &format!("address={addr}"))
            .await;
        return again("current_password", "This is not your current password.");
    }
    if let Err(e) = crate::users::check_password(&form.new_password) {
        return again("new_password", &e);
    }
    if form.new_password != form.confirm_password {
        return again("confirm_password", "The two new passwords differ.");
    }
    let stored = match crate::users::hash_blocking(form.new_password).await {
        Ok(hash) => state.store.set_password(&op.user, &hash).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "password change failed");
        return page(StatusCode::INTERNAL_SERVER_ERROR, html! { "The password could not be stored; it is unchanged." });
    }
    tracing::info!(user = %op.user, %addr, "password changed; the user's sessions ended");
    audit(&state.store, &op.user, "password_changed", "/account/password", "ok", &format!("address={addr}")).await;
    let mut r = Redirect::to("/login?changed=1").into_response();
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, "", Some(0)));
    r
}

/// `GET /`: the fleet at a glance.
async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match signed_in(&state, &headers, "/").await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let counts = async {
        let active = crate::store::DeviceQuery {
            status: Some(crate::store::DeviceStatus::Active),
            ..crate::store::DeviceQuery::default()
        };
        let enrolled = usize::try_from(state.store.count_devices(&active).await?).unwrap_or(0);
        let pending = state.store.count_actions(crate::store::ActionStatus::PendingApproval).await?;
        let contained = state.store.containment(None).await?;
        let alerts = state.store.open_alert_counts().await?;
        let investigations = state.store.investigation_counts().await?;
        Ok::<_, crate::store::StoreError>((enrolled, pending, contained, alerts, investigations))
    };
    let (enrolled, pending, contained, alerts, investigations) = match counts.await {
        Ok(c) => c,
        Err(e) => return db_error("overview counts", e),
    };
    let online = state.gateway.sessions.len();
    let isolated = contained.values().filter(|c| c.isolated).count();
    let restricted = contained.values().filter(|c| c.restricted).count();
    let open = |severity: &str| alerts.iter().find(|(s, _)| s == severity).map_or(0, |(_, n)| *n);
    let running = investigations.iter().find(|(s, _)| s == "running").map_or(0, |(_, n)| *n);
    let waiting = investigations.iter().find(|(s, _)| s == "pending_approval").map_or(0, |(_, n)| *n);
    let tile = |href: &str, label: &str, value: String| {
        html! { div { dt { a href=(href) { (label) } } dd { (value) } } }
    };
    let body = html! {
        h1 { "Overview" }
        section #live data-live {
            h2 { "Devices" }
            dl.tiles {
                (tile("/devices", "Enrolled", enrolled.to_string()))
                (tile("/devices?status=online", "Online now", online.to_string()))
                (tile("/devices?status=offline", "Offline", enrolled.saturating_sub(online).to_string()))
                (tile("/devices?containment=isolated", "Isolated", isolated.to_string()))
                (tile("/devices?containment=restricted", "Code restricted", restricted.to_string()))
            }
            h2 { "Work" }
            dl.tiles {
                (tile("/actions?tab=pending", "Pending approvals", pending.to_string()))
                (tile("/investigations?status=running", "Investigations running", running.to_string()))
                (tile("/investigations?status=pending_approval", "Investigations waiting", waiting.to_string()))
            }
            h2 { "Open alerts" }
            dl.tiles {
                (tile("/alerts?status=open&severity=malicious", "Malicious", open("malicious").to_string()))
                (tile("/alerts?status=open&severity=suspicious", "Suspicious", open("suspicious").to_string()))
                (tile("/alerts?status=open&severity=informational", "Informational", open("informational").to_string()))
            }
        }
    };
    page(StatusCode::OK, layout("Overview", Some(&op), &op.csrf_token, body))
}

#[cfg(test)]
mod tests {
    use super::local_next;

    #[test]
    fn sign_in_returns_only_to_a_local_path() {
        assert_eq!(local_next(Some("/actions?status=pending")), "/actions?status=pending");
        for away in ["//evil.example", "/\\evil.example", "/\t/evil.example", "https://evil.example", "/a b", ""] {
            assert_eq!(local_next(Some(away)), "/", "{away:?}");
        }
        assert_eq!(local_next(None), "/");
    }
}
