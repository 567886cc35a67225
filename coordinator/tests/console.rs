//! Console sign-in over real HTTPS: the first admin, session cookies,
//! CSRF, throttling, timeouts, escaping, and users managed through the API
//! and picketctl. (The browser itself is driven in tests/tests/console_browser.rs.)

use std::time::Duration;

use picket_coordinator::client::Client;
use picket_coordinator::config::ConsoleConfig;
use picket_coordinator::{Config, Coordinator};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Env {
    _dir: tempfile::TempDir,
    c: Coordinator,
    shutdown: CancellationToken,
    admin: Client,
    web: ureq::Agent,
    ca: String,
}

async fn start(console: ConsoleConfig) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        agent_listen: "127.0.0.1:0".parse().expect("addr"),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        console,
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let c = Coordinator::start(config, shutdown.clone()).await.expect("start");
    let ca = dir.path().join("pki/ca.pem").display().to_string();
    let pem = std::fs::read(&ca).expect("ca");
    let token = std::fs::read_to_string(&c.admin_token_path).expect("token");
    let admin = Client::with_ca(&c.api_url(), &token, &pem).expect("client");
    // A browser-like agent that shows redirects instead of following them.
    let web: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(admin.tls_config())
        .build()
        .into();
    Env { _dir: dir, c, shutdown, admin, web, ca }
}

struct Page {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }

    fn cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }

    /// The value `name` is set to by this response.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';').next().and_then(|kv| kv.split_once('=')).filter(|(k, _)| *k == name).map(|(_, v)| v.into())
        })
    }

    /// `<meta name="csrf-token" content="…">`
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf-token\" content=\"").expect("csrf meta") + 27;
        self.body[at..].split('"').next().unwrap_or_default().to_string()
    }
}

const SESSION: &str = "__Host-picket_session";
const LOGIN: &str = "__Host-picket_login";

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.c.api_url())
    }

    fn get(&self, path: &str, cookie: &str) -> Page {
        let mut req = self.web.get(&self.url(path));
        if !cookie.is_empty() {
            req = req.header("Cookie", cookie);
        }
        read(req.call().expect("GET"))
    }

    fn post_form(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Page {
        let mut req = self.web.post(&self.url(path));
        if !cookie.is_empty() {
            req = req.header("Cookie", cookie);
        }
        read(req.send_form(form.iter().copied()).expect("POST"))
    }

    /// Signs in through the form as a browser does: GET the form (its
    /// cookie and token), then POST it.
    fn sign_in(&self, user: &str, password: &str) -> Page {
        let form = self.get("/login", "");
        let token = form.cookie(LOGIN).expect("login cookie");
        self.post_form(
            "/login",
            &format!("{LOGIN}={token}"),
            &[("username", user), ("password", password), ("csrf_token", &token)],
        )
    }

    /// A live session's cookie header and CSRF token.
    fn session(&self, user: &str, password: &str) -> (String, String) {
        let done = self.sign_in(user, password);
        assert_eq!(done.status, 303, "{}", done.body);
        let cookie = format!("{SESSION}={}", done.cookie(SESSION).expect("session cookie"));
        let home = self.get("/", &cookie);
        assert_eq!(home.status, 200, "{}", home.body);
        (cookie, home.csrf())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.c.join().await;
    }
}

fn read(mut res: ureq::http::Response<ureq::Body>) -> Page {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    Page { status, headers, body }
}

fn admin_password(env: &Env) -> String {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&env.c.admin_password_path).expect("admin.password");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    std::fs::read_to_string(&env.c.admin_password_path).expect("password").trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_signs_in_with_a_strict_cookie_and_csrf_guards_sign_out() {
    let env = start(ConsoleConfig::default()).await;
    let password = admin_password(&env);
    let env = tokio::task::spawn_blocking(move || {
        // Not signed in: to the form, remembering where to go back.
        let home = env.get("/", "");
        assert_eq!(home.status, 303);
        assert_eq!(home.header("location"), "/login?next=/");
        let form = env.get("/login?next=/", "");
        assert_eq!(form.status, 200);
        assert!(form.body.contains("name=\"username\"") && form.body.contains("name=\"password\""));
        let csp = form.header("content-security-policy");
        assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!form.body.contains("<script>") && !form.body.contains("style="), "no inline script or style");
        assert!(form.header("strict-transport-security").starts_with("max-age="));

        let done = env.sign_in("admin", &password);
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.header("location"), "/");
        let set = done.cookies().into_iter().find(|c| c.starts_with(SESSION)).expect("session cookie");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let secret = done.cookie(SESSION).expect("session");
        assert_eq!(secret.len(), 64, "256 bits as hex");
        let cookie = format!("{SESSION}={secret}");
        let home = env.get("/", &cookie);
        assert_eq!(home.status, 200);
        assert!(home.body.contains("admin · admin"), "{}", home.body);
        let csrf = home.csrf();
        assert_eq!(csrf.len(), 64);

        // Sign-out without the token, or with another, is refused and the
        // session lives on.
        assert_eq!(env.post_form("/logout", &cookie, &[]).status, 403);
        assert_eq!(env.post_form("/logout", &cookie, &[("csrf_token", &"0".repeat(64))]).status, 403);
        assert_eq!(env.get("/", &cookie).status, 200);
        // A sign-in form posted without its cookie (another site's form) is refused.
        let forged =
            env.post_form("/login", "", &[("username", "admin"), ("password", &password), ("csrf_token", "x")]);
        assert_eq!(forged.status, 403);
        assert!(forged.cookie(SESSION).is_none());

        // With the token (as a header here): signed out, the cookie no longer works.
        let out = read(
            env.web
                .post(&env.url("/logout"))
                .header("Cookie", &cookie)
                .header("X-CSRF-Token", &csrf)
                .send_form([("a", "b")])
                .expect("logout"),
        );
        assert_eq!(out.status, 303);
        assert_eq!(env.get("/", &cookie).status, 303);
        env
    })
    .await
    .expect("blocking");
    let audit = env.admin.get("/api/v1/audit?limit=50").expect("audit");
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"login") && actions.contains(&"logout"), "{actions:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_slowed_down_audited_and_escaped() {
    let env = start(ConsoleConfig::default()).await;
    let password = admin_password(&env);
    let env = tokio::task::spawn_blocking(move || {
        // What was typed comes back as text, never as markup.
        let xss = "<img src=x onerror=alert(1)>";
        let failed = env.sign_in(xss, "nope");
        assert_eq!(failed.status, 401);
        assert!(failed.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{}", failed.body);
        assert!(!failed.body.contains(xss));
        // Five failures from this address (the one above and four more)...
        for _ in 0..4 {
            assert_eq!(env.sign_in("admin", "wrong password").status, 401);
        }
        // ...and the sixth try, even with the right password, waits.
        let slowed = env.sign_in("admin", &password);
        assert_eq!(slowed.status, 429, "{}", slowed.body);
        assert!(slowed.header("retry-after").parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)));
        assert!(slowed.body.contains("Too many failed sign-ins"));
        assert!(slowed.cookie(SESSION).is_none());
        env
    })
    .await
    .expect("blocking");
    let audit = env.admin.get("/api/v1/audit?limit=50").expect("audit");
    let failures = audit["items"].as_array().expect("items").iter().filter(|e| e["action"] == "login_failed").count();
    assert_eq!(failures, 5);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_sends_the_browser_to_sign_in() {
    let env = start(ConsoleConfig { idle_timeout_secs: 1, absolute_timeout_secs: 3600 }).await;
    let password = admin_password(&env);
    tokio::task::spawn_blocking(move || {
        let (cookie, _) = env.session("admin", &password);
        std::thread::sleep(Duration::from_millis(2100));
        let expired = env.get("/", &cookie);
        assert_eq!(expired.status, 303);
        assert_eq!(expired.header("location"), "/login?next=/&expired=1");
        assert!(env.get("/login?next=/&expired=1", "").body.contains("Your session ended"));
        // Ended for good, not only for that request.
        assert_eq!(env.get("/", &cookie).status, 303);
        env
    })
    .await
    .expect("blocking")
    .stop()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_by_admins_and_disable_or_reset_ends_their_sessions() {
    let env = start(ConsoleConfig::default()).await;
    let env = tokio::task::spawn_blocking(move || {
        let made = env.admin.post("/api/v1/users", &json!({"name": "alice", "role": "responder"})).expect("create");
        let generated = made["password"].as_str().expect("generated password").to_string();
        assert_eq!(generated.len(), 24);
        let given = "a long enough password";
        env.admin
            .post("/api/v1/users", &json!({"name": "bob", "role": "viewer", "password": given}))
            .map(|b| assert!(b.get("password").is_none(), "a given password is never echoed"))
            .expect("create bob");
        for (body, why) in [
            (json!({"name": "Carol", "role": "viewer"}), "user name"),
            (json!({"name": "carol", "role": "viewer", "password": "short"}), "at least 12"),
            (json!({"name": "alice", "role": "viewer"}), "already exists"),
        ] {
            let e = env.admin.post("/api/v1/users", &body).expect_err("refused");
            assert!(e.to_string().contains(why), "{e}");
        }
        // Roles: a viewer's or responder's token cannot manage users.
        let viewer = env.admin.post("/api/v1/api-tokens", &json!({"name": "v", "role": "approver"})).expect("token");
        let pem = std::fs::read(&env.ca).expect("ca");
        let approver = Client::with_ca(&env.c.api_url(), viewer["token"].as_str().expect("secret"), &pem).expect("c");
        assert_eq!(approver.get("/api/v1/users").expect_err("403").status(), Some(403));
        assert_eq!(approver.post("/api/v1/users/alice/disable", &json!({})).expect_err("403").status(), Some(403));

        let (alice, _) = env.session("alice", &generated);
        let (bob, _) = env.session("bob", given);
        env.admin.post("/api/v1/users/alice/disable", &json!({})).expect("disable");
        assert_eq!(env.get("/", &alice).status, 303, "disabled: session ended");
        assert_eq!(env.sign_in("alice", &generated).status, 401);
        env.admin.post("/api/v1/users/alice/enable", &json!({})).expect("enable");
        assert_eq!(env.sign_in("alice", &generated).status, 303);

        let reset = env.admin.post("/api/v1/users/bob/reset-password", &json!({})).expect("reset");
        let fresh = reset["password"].as_str().expect("new password").to_string();
        assert_eq!(env.get("/", &bob).status, 303, "reset: session ended");
        assert_eq!(env.sign_in("bob", given).status, 401);
        env.session("bob", &fresh);

        let list = env.admin.get("/api/v1/users").expect("list");
        let names: Vec<&str> =
            list["items"].as_array().expect("items").iter().filter_map(|u| u["name"].as_str()).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);
        assert!(!list.to_string().contains("argon2"), "hashes never leave the server");
        // The last enabled admin stays.
        let e = env.admin.post("/api/v1/users/admin/disable", &json!({})).expect_err("refused");
        assert!(e.to_string().contains("yourself") || e.to_string().contains("last enabled admin"), "{e}");
        env
    })
    .await
    .expect("blocking");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changes_their_password_with_the_current_one_and_every_session_ends() {
    let env = start(ConsoleConfig::default()).await;
    let first = admin_password(&env);
    tokio::task::spawn_blocking(move || {
        let (cookie, csrf) = env.session("admin", &first);
        let form = env.get("/account", &cookie);
        assert_eq!(form.status, 200);
        assert!(form.body.contains("name=\"current_password\"") && form.body.contains("<label for=\"new_password\""));
        let change = |token: &str, current: &str, new: &str, confirm: &str| {
            env.post_form(
                "/account/password",
                &cookie,
                &[
                    ("csrf_token", token),
                    ("current_password", current),
                    ("new_password", new),
                    ("confirm_password", confirm),
                ],
            )
        };
        let new = "a brand new passphrase";
        assert_eq!(change("", &first, new, new).status, 403, "no CSRF token");
        let wrong = change(&csrf, "not it at all", new, new);
        assert_eq!(wrong.status, 400);
        assert!(wrong.body.contains("id=\"current_password-error\""), "{}", wrong.body);
        let differ = change(&csrf, &first, new, "something else entirely");
        assert_eq!(differ.status, 400);
        assert!(differ.body.contains("The two new passwords differ"));
        assert!(change(&csrf, &first, "short", "short").body.contains("at least 12"));
        // Still the old password: nothing changed so far.
        assert_eq!(env.get("/", &cookie).status, 200);

        let done = change(&csrf, &first, new, new);
        assert_eq!(done.status, 303);
        assert_eq!(done.header("location"), "/login?changed=1");
        assert_eq!(env.get("/", &cookie).status, 303, "this session ended too");
        assert_eq!(env.sign_in("admin", &first).status, 401);
        env.session("admin", new);
        env
    })
    .await
    .expect("blocking")
    .stop()
    .await;
}
