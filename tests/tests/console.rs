//! The console over real HTTPS, as a browser speaks to it: the first
//! admin, session cookies, CSRF, throttling, timeouts, escaping, users
//! managed through the API, and the device pages with real agents. On
//! every database.

use std::time::Duration;

use picket_e2e::web::SESSION;
use picket_e2e::{databases, eventually, TestEnv};
use serde_json::json;

/// Runs `f` (blocking HTTP) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The `action` of each of the latest audit entries.
async fn audited(env: &TestEnv) -> Vec<String> {
    let audit = env.admin(|c| c.get("/api/v1/audit?limit=100")).await.expect("audit");
    audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_signs_in_with_a_strict_cookie_and_csrf_guards_sign_out() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            // Not signed in: to the form, remembering where to go back.
            let home = web.get("/", "");
            assert_eq!(home.status, 303);
            assert_eq!(home.header("location"), "/login?next=/");
            let form = web.get("/login?next=/", "");
            assert_eq!(form.status, 200);
            assert!(form.body.contains("name=\"username\"") && form.body.contains("name=\"password\""));
            let csp = form.header("content-security-policy");
            assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert!(!form.body.contains("<script>") && !form.body.contains("style="), "no inline script or style");
            assert!(form.header("strict-transport-security").starts_with("max-age="));

            let done = web.sign_in("admin", &password);
            assert_eq!(done.status, 303, "{}", done.body);
            assert_eq!(done.header("location"), "/");
            let set = done.cookies().into_iter().find(|c| c.starts_with(SESSION)).expect("session cookie");
            for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(attribute), "{set}");
            }
            let secret = done.cookie(SESSION).expect("session");
            assert_eq!(secret.len(), 64, "256 bits as hex");
            let cookie = format!("{SESSION}={secret}");
            let home = web.get("/", &cookie);
            assert_eq!(home.status, 200);
            assert!(home.body.contains("admin · admin"), "{}", home.body);
            let csrf = home.csrf();
            assert_eq!(csrf.len(), 64);

            // Sign-out without the token, or with another, is refused and
            // the session lives on.
            assert_eq!(web.post_form("/logout", &cookie, &[]).status, 403);
            assert_eq!(web.post_form("/logout", &cookie, &[("csrf_token", &"0".repeat(64))]).status, 403);
            assert_eq!(web.get("/", &cookie).status, 200);
            // A sign-in form posted without its cookie (another site's form) is refused.
            let forged =
                web.post_form("/login", "", &[("username", "admin"), ("password", &password), ("csrf_token", "x")]);
            assert_eq!(forged.status, 403);
            assert!(forged.cookie(SESSION).is_none());
            // A return address off this site is not followed.
            let form = web.get("/login", "");
            let token = form.cookie(picket_e2e::web::LOGIN).expect("login cookie");
            let away = web.post_form(
                "/login",
                &format!("{}={token}", picket_e2e::web::LOGIN),
                &[("username", "admin"), ("password", &password), ("csrf_token", &token), ("next", "//evil.example")],
            );
            assert_eq!(away.header("location"), "/");

            // With the token (as a header here): signed out, the cookie no longer works.
            let out = web.post_form_with("/logout", &cookie, &[("X-CSRF-Token", &csrf)], &[("a", "b")]);
            assert_eq!(out.status, 303);
            assert_eq!(web.get("/", &cookie).status, 303);
        })
        .await;
        let actions = audited(&env).await;
        assert!(actions.iter().any(|a| a == "login") && actions.iter().any(|a| a == "logout"), "{actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_slowed_down_audited_and_escaped() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            // What was typed comes back as text, never as markup.
            let xss = "<img src=x onerror=alert(1)>";
            let failed = web.sign_in(xss, "nope");
            assert_eq!(failed.status, 401);
            assert!(failed.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{}", failed.body);
            assert!(!failed.body.contains(xss));
            // Five failures from this address (the one above and four more)...
            for _ in 0..4 {
                assert_eq!(web.sign_in("admin", "wrong password").status, 401);
            }
            // ...and the sixth try, even with the right password, waits.
            let slowed = web.sign_in("admin", &password);
            assert_eq!(slowed.status, 429, "{}", slowed.body);
            assert!(slowed.header("retry-after").parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)));
            assert!(slowed.body.contains("Too many failed sign-ins"));
            assert!(slowed.cookie(SESSION).is_none());
        })
        .await;
        let actions = audited(&env).await;
        assert_eq!(actions.iter().filter(|a| *a == "login_failed").count(), 5, "{actions:?}");
        assert!(actions.iter().any(|a| a == "login_throttled"), "{actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_sends_the_browser_to_sign_in() {
    for db in databases().await {
        let env = TestEnv::start_with(&db, |c| c.console.idle_timeout_secs = 3).await;
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            let (cookie, _) = web.session("admin", &password);
            // In use, it lives past its idle timeout...
            for _ in 0..4 {
                std::thread::sleep(Duration::from_secs(1));
                assert_eq!(web.get("/", &cookie).status, 200);
            }
            // ...and left alone, it ends.
            std::thread::sleep(Duration::from_millis(3300));
            let expired = web.get("/devices", &cookie);
            assert_eq!(expired.status, 303);
            assert_eq!(expired.header("location"), "/login?next=/devices&expired=1");
            assert!(web.get("/login?next=/devices&expired=1", "").body.contains("Your session ended"));
            // Ended for good, not only for that request.
            assert_eq!(web.get("/", &cookie).status, 303);
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_by_admins_and_disable_or_reset_ends_their_sessions() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let made = env
            .admin(|c| c.post("/api/v1/users", &json!({"name": "alice", "role": "responder"})))
            .await
            .expect("alice");
        let generated = made["password"].as_str().expect("generated password").to_string();
        assert_eq!(generated.len(), 24);
        let given = "a long enough password";
        let bob = env
            .admin(move |c| c.post("/api/v1/users", &json!({"name": "bob", "role": "viewer", "password": given})))
            .await
            .expect("bob");
        assert!(bob.get("password").is_none(), "a given password is never echoed");
        for (body, why) in [
            (json!({"name": "Carol", "role": "viewer"}), "user name"),
            (json!({"name": "carol", "role": "viewer", "password": "short"}), "at least 12"),
            (json!({"name": "alice", "role": "viewer"}), "already exists"),
        ] {
            let e = env.admin(move |c| c.post("/api/v1/users", &body)).await.expect_err("refused");
            assert!(e.to_string().contains(why), "{e}");
        }
        // Roles: below admin, nobody manages users.
        let approver = env.token("approver-1", "approver").await;
        let e = env.api(&approver, |c| c.get("/api/v1/users")).await.expect_err("403");
        assert_eq!(e.status(), Some(403));
        let e = env.api(&approver, |c| c.post("/api/v1/users/alice/disable", &json!({}))).await.expect_err("403");
        assert_eq!(e.status(), Some(403));

        let web = env.web();
        let (web, alice, bob) = blocking(move || {
            let (alice, _) = web.session("alice", &generated);
            let (bob, _) = web.session("bob", given);
            (web, (alice, generated), bob)
        })
        .await;
        env.admin(|c| c.post("/api/v1/users/alice/disable", &json!({}))).await.expect("disable");
        let web = blocking(move || {
            assert_eq!(web.get("/", &alice.0).status, 303, "disabled: session ended");
            assert_eq!(web.sign_in("alice", &alice.1).status, 401);
            web
        })
        .await;
        env.admin(|c| c.post("/api/v1/users/alice/enable", &json!({}))).await.expect("enable");
        let reset = env.admin(|c| c.post("/api/v1/users/bob/reset-password", &json!({}))).await.expect("reset");
        let fresh = reset["password"].as_str().expect("new password").to_string();
        blocking(move || {
            assert_eq!(web.get("/", &bob).status, 303, "reset: session ended");
            assert_eq!(web.sign_in("bob", given).status, 401);
            web.session("bob", &fresh);
        })
        .await;

        let list = env.admin(|c| c.get("/api/v1/users")).await.expect("list");
        let names: Vec<&str> =
            list["items"].as_array().expect("items").iter().filter_map(|u| u["name"].as_str()).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);
        assert!(!list.to_string().contains("argon2"), "hashes never leave the server");
        let e = env.admin(|c| c.post("/api/v1/users/admin/disable", &json!({}))).await.expect_err("refused");
        assert!(e.to_string().contains("yourself"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changes_their_password_with_the_current_one_and_every_session_ends() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let first = env.admin_password();
        let web = env.web();
        blocking(move || {
            let (cookie, csrf) = web.session("admin", &first);
            let form = web.get("/account", &cookie);
            assert_eq!(form.status, 200);
            assert!(
                form.body.contains("name=\"current_password\"") && form.body.contains("<label for=\"new_password\"")
            );
            let change = |token: &str, current: &str, new: &str, confirm: &str| {
                web.post_form(
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
            assert_eq!(web.get("/", &cookie).status, 200, "nothing changed so far");

            let done = change(&csrf, &first, new, new);
            assert_eq!(done.status, 303);
            assert_eq!(done.header("location"), "/login?changed=1");
            assert_eq!(web.get("/", &cookie).status, 303, "this session ended too");
            assert_eq!(web.sign_in("admin", &first).status, 401);
            web.session("admin", new);
        })
        .await;
    }
}

/// The device list finds real agents by id and by online state, and a
/// device's page shows its facts and the actions taken on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_list_searches_and_filters_real_agents_and_the_device_page_shows_its_actions() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let (online, dir) = env.enroll("online").await;
        let (offline, _) = env.enroll("offline").await;
        let _agent = env.start_agent(online, &dir);
        eventually!(10, "agent online", env.device_status(online).await == "online");
        let scan = json!({"kind": "scan", "params": {"paths": [dir]}, "comment": "console <b>check</b>"});
        env.request_action(online, scan).await;
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            let (cookie, _) = web.session("admin", &password);
            let list = web.get("/devices", &cookie);
            assert_eq!(list.status, 200);
            assert!(list.body.contains("2 devices"), "{}", list.body);
            for id in [online, offline] {
                assert!(list.body.contains(&format!("href=\"/devices/{id}\"")));
            }
            let only_online = web.get("/devices?status=online", &cookie);
            assert!(only_online.body.contains(&format!("/devices/{online}")));
            assert!(!only_online.body.contains(&format!("/devices/{offline}")));
            let by_id = web.get(&format!("/devices?q={}", &offline.to_string()[..8]), &cookie);
            assert!(by_id.body.contains("1 device<") && by_id.body.contains(&format!("/devices/{offline}")));

            let page = web.get(&format!("/devices/{online}"), &cookie);
            assert_eq!(page.status, 200);
            assert!(page.body.contains(&online.to_string()) && page.body.contains("badge online"));
            assert!(page.body.contains("scan"), "{}", page.body);
            // The comment is the requestor's text, shown as text.
            assert!(page.body.contains("console &lt;b&gt;check&lt;/b&gt;"), "{}", page.body);
            assert_eq!(web.get("/devices/not-a-device", &cookie).status, 404);
            assert_eq!(web.get(&format!("/devices/{}", uuid::Uuid::new_v4()), &cookie).status, 404);
        })
        .await;
    }
}

/// The id in a redirect to `/actions/{id}?done=…`.
fn action_in(location: &str) -> String {
    location.trim_start_matches("/actions/").split('?').next().unwrap_or_default().to_string()
}

/// The action center from the console, as each role: a viewer sees and
/// changes nothing, a responder requests (with a comment; offboarding
/// with the host name typed) and cancels and undoes, an approver decides
/// — never on what they asked for themselves — and every request without
/// the session's CSRF token is refused. A real agent runs the quarantine
/// that is then undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_action_center_enforces_roles_csrf_and_the_two_person_rule_from_the_console() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let (online, dir) = env.enroll("console-online").await;
        let (offline, _) = env.enroll("console-offline").await;
        let _agent = env.start_agent(online, &dir);
        eventually!(10, "agent online", env.device_status(online).await == "online");
        let password = "correct horse battery staple";
        for (name, role) in [("rita", "responder"), ("abe", "approver"), ("ann", "approver"), ("val", "viewer")] {
            let body = json!({"name": name, "role": role, "password": password});
            env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        }
        let lab = tempfile::tempdir().expect("tempdir");
        let victim = lab.path().join("dropper.bin");
        std::fs::write(&victim, b"console quarantine test").expect("write");
        let web = env.web();
        let file = victim.to_str().expect("path").to_string();
        let (quarantine, undo) = blocking(move || {
            let as_user = |name: &str| web.session(name, password);
            let (val, val_csrf) = as_user("val");
            let (rita, rita_csrf) = as_user("rita");
            let (abe, abe_csrf) = as_user("abe");
            let (ann, ann_csrf) = as_user("ann");
            let request = |cookie: &str, csrf: &str, device: uuid::Uuid, fields: &[(&str, &str)]| {
                let mut form = vec![("csrf_token", csrf)];
                form.extend_from_slice(fields);
                web.post_form(&format!("/devices/{device}/actions"), cookie, &form)
            };

            // A viewer sees no action bar, and the server refuses anyway.
            let page = web.get(&format!("/devices/{offline}"), &val);
            assert_eq!(page.status, 200);
            assert!(!page.body.contains("Take action"), "a viewer is offered no action");
            let refused = request(&val, &val_csrf, offline, &[("kind", "isolate"), ("comment", "viewer try")]);
            assert_eq!(refused.status, 403, "{}", refused.body);
            assert!(refused.body.contains("responder"), "{}", refused.body);

            // Without the session's token nothing is requested.
            let forged = web.post_form(
                &format!("/devices/{offline}/actions"),
                &rita,
                &[("kind", "isolate"), ("comment", "forged")],
            );
            assert_eq!(forged.status, 403);
            // A comment is required.
            let silent = request(&rita, &rita_csrf, offline, &[("kind", "isolate"), ("comment", "  ")]);
            assert_eq!(silent.status, 400, "{}", silent.body);
            assert!(silent.body.contains("comment is required"), "{}", silent.body);

            // The responder isolates the offline device: queued until it
            // connects; cancelling takes it back.
            let page = web.get(&format!("/devices/{offline}"), &rita);
            assert!(page.body.contains("Take action") && page.body.contains("Isolate device"));
            let isolate = request(&rita, &rita_csrf, offline, &[("kind", "isolate"), ("comment", "contain it")]);
            assert_eq!(isolate.status, 303, "{}", isolate.body);
            let isolate_id = action_in(&isolate.header("location"));
            let shown = web.get(&format!("/actions/{isolate_id}"), &val);
            assert!(shown.body.contains("badge queued") && shown.body.contains("contain it"), "{}", shown.body);
            assert!(!shown.body.contains("Cancel action"), "a viewer is offered no cancel");
            assert_eq!(cancel(&web, &isolate_id, &val, &val_csrf), 403);
            assert_eq!(cancel(&web, &isolate_id, &rita, ""), 403, "no CSRF token");
            assert_eq!(cancel(&web, &isolate_id, &rita, &rita_csrf), 303);
            assert!(web.get(&format!("/actions/{isolate_id}"), &rita).body.contains("badge cancelled"));

            // Offboarding asks for the host name typed out.
            let wrong = request(
                &rita,
                &rita_csrf,
                offline,
                &[("kind", "offboard"), ("comment", "retired"), ("confirm_hostname", "some-other-host")],
            );
            assert_eq!(wrong.status, 400);
            assert!(wrong.body.contains("does not match"), "{}", wrong.body);
            let hostname = picket_agent::sysinfo::hostname();
            let offboard = |cookie: &str, csrf: &str| {
                let r = request(
                    cookie,
                    csrf,
                    offline,
                    &[("kind", "offboard"), ("comment", "retired"), ("confirm_hostname", &hostname)],
                );
                assert_eq!(r.status, 303, "{}", r.body);
                action_in(&r.header("location"))
            };

            // Abe asks for it: pending approval, and Abe may not decide it.
            let pending = offboard(&abe, &abe_csrf);
            let page = web.get(&format!("/actions/{pending}"), &abe);
            assert!(page.body.contains("badge pending_approval"), "{}", page.body);
            assert!(page.body.contains("two-person rule") && !page.body.contains(">Approve<"), "{}", page.body);
            let own = web.post_form(
                &format!("/actions/{pending}/approve"),
                &abe,
                &[("csrf_token", &abe_csrf), ("comment", "self")],
            );
            assert_eq!(own.status, 403, "{}", own.body);
            // Nor may a responder or a viewer, from the list or the page.
            for (cookie, csrf) in [(&rita, &rita_csrf), (&val, &val_csrf)] {
                let path = format!("/actions/{pending}/approve");
                assert_eq!(web.post_form(&path, cookie, &[("csrf_token", csrf)]).status, 403);
                let bulk = web.post_form(
                    "/actions/decide",
                    cookie,
                    &[("csrf_token", csrf), ("id", &pending), ("decision", "approve")],
                );
                assert_eq!(bulk.status, 403);
            }
            let list = web.get("/actions?tab=pending", &val);
            assert!(list.body.contains(&pending) && !list.body.contains("Approve selected"), "{}", list.body);
            // Ann sees the pending tab with its boxes, and rejects it there.
            let list = web.get("/actions?tab=pending", &ann);
            assert!(list.body.contains("Approve selected") && list.body.contains(&format!("value=\"{pending}\"")));
            let no_token = web.post_form("/actions/decide", &ann, &[("id", &pending), ("decision", "reject")]);
            assert_eq!(no_token.status, 403);
            let decided = web.post_form(
                "/actions/decide",
                &ann,
                &[("csrf_token", &ann_csrf), ("id", &pending), ("decision", "reject"), ("comment", "not yet")],
            );
            assert_eq!(decided.status, 200, "{}", decided.body);
            assert!(decided.body.contains("1 of 1 rejected"), "{}", decided.body);
            let page = web.get(&format!("/actions/{pending}"), &abe);
            assert!(page.body.contains("badge rejected") && page.body.contains("ann"), "{}", page.body);

            // Asked again by Rita, approved by Abe on the action page.
            let again = offboard(&rita, &rita_csrf);
            let approved = web.post_form(
                &format!("/actions/{again}/approve"),
                &abe,
                &[("csrf_token", &abe_csrf), ("comment", "ok")],
            );
            assert_eq!(approved.status, 303, "{}", approved.body);
            assert!(web.get(&format!("/actions/{again}"), &rita).body.contains("badge queued"));
            assert_eq!(cancel(&web, &again, &rita, &rita_csrf), 303);

            // The history tab and its CSV hold what happened.
            let history = web.get("/actions?tab=history", &val);
            for id in [&isolate_id, &pending, &again] {
                assert!(history.body.contains(id.as_str()), "{id} in history");
            }
            let csv = web.get("/actions.csv?tab=history&kind=offboard", &val);
            assert_eq!(csv.status, 200);
            assert!(csv.header("content-type").starts_with("text/csv"));
            assert!(csv.body.contains(&pending) && csv.body.contains(&again) && !csv.body.contains(&isolate_id));

            // A quarantine on the online device, run by the real agent.
            let q = request(
                &rita,
                &rita_csrf,
                online,
                &[("kind", "stop_and_quarantine"), ("file", &file), ("comment", "dropper")],
            );
            assert_eq!(q.status, 303, "{}", q.body);
            (action_in(&q.header("location")), (rita, rita_csrf, val))
        })
        .await;
        eventually!(
            30,
            "quarantine done",
            matches!(env.action_status(&quarantine).await.as_str(), "succeeded" | "failed")
        );
        assert_eq!(env.action_status(&quarantine).await, "succeeded", "{}", env.action(&quarantine).await);
        let (rita, rita_csrf, val) = undo;
        let web = env.web();
        let undone = blocking(move || {
            let page = web.get(&format!("/actions/{quarantine}"), &val);
            assert!(page.body.contains("badge succeeded") && !page.body.contains("Undo action"));
            assert!(web.get(&format!("/actions/{quarantine}"), &rita).body.contains("Undo action"));
            let undo = web.post_form(
                &format!("/actions/{quarantine}/undo"),
                &rita,
                &[("csrf_token", &rita_csrf), ("comment", "false positive")],
            );
            assert_eq!(undo.status, 303, "{}", undo.body);
            action_in(&undo.header("location"))
        })
        .await;
        eventually!(30, "release done", matches!(env.action_status(&undone).await.as_str(), "succeeded" | "failed"));
        assert_eq!(env.action_status(&undone).await, "succeeded", "{}", env.action(&undone).await);
        assert!(victim.exists(), "the file is back");
        let audit = audited(&env).await;
        assert!(audit.iter().filter(|a| *a == "POST").count() >= 8, "{audit:?}");
    }
}

/// Cancel action `id` from its page; the answer's status.
fn cancel(web: &picket_e2e::web::Web, id: &str, cookie: &str, csrf: &str) -> u16 {
    web.post_form(&format!("/actions/{id}/cancel"), cookie, &[("csrf_token", csrf), ("comment", "later")]).status
}

/// A real detection from the console: the alert and its investigation
/// are listed and shown; a viewer gets no triage and is refused it; a
/// responder sets the status, is refused a false positive (approvers
/// only) and terminates the investigation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_and_investigations_are_triaged_from_the_console_by_role() {
    for db in databases().await {
        let lab = tempfile::tempdir().expect("lab");
        let temp = lab.path().join("temp");
        std::fs::create_dir_all(&temp).expect("mkdir");
        let l = lab.path().to_path_buf();
        let mut env = TestEnv::start_with(&db, move |c| {
            c.investigations.automatic = true;
            c.investigations.temp_folders = vec![l.join("temp").display().to_string()];
            c.investigations.core_folders = vec![l.join("core").display().to_string()];
            c.investigations.copy_search_paths = vec![l.join("temp").display().to_string()];
        })
        .await;
        let body = json!({ "automation_level": "none" });
        env.admin(move |c| c.patch("/api/v1/device-groups/default", &body)).await.expect("automation none");
        let (device, dir) = env.enroll("detector").await;
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "agent online", env.device_status(device).await == "online");
        std::fs::write(temp.join("dropper.com"), picket_e2e::eicar()).expect("drop");
        let scan = json!({ "kind": "scan", "params": { "paths": [temp] }, "comment": "e2e" });
        let path = format!("/api/v1/devices/{device}/actions");
        let a = env.admin(move |c| c.post(&path, &scan)).await.expect("scan");
        let scan_id = a["id"].as_str().expect("id").to_string();
        eventually!(30, "scan done", env.action_status(&scan_id).await == "succeeded");
        let mut investigation: String;
        eventually!(30, "investigation waiting", {
            let list = env.admin(|c| c.get("/api/v1/investigations")).await.expect("list");
            let first = &list["items"][0];
            investigation = first["id"].as_str().unwrap_or_default().to_string();
            first["status"] == "pending_approval"
        });
        let alerts = env.admin(|c| c.get("/api/v1/alerts")).await.expect("alerts");
        let alert = alerts["items"][0]["id"].as_str().expect("alert").to_string();
        let rule = alerts["items"][0]["detection"]["rule"].as_str().expect("rule").to_string();
        for (name, role) in [("rita", "responder"), ("val", "viewer")] {
            let body = json!({"name": name, "role": role, "password": "correct horse battery staple"});
            env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        }
        let web = env.web();
        let inv = investigation.clone();
        blocking(move || {
            let (val, val_csrf) = web.session("val", "correct horse battery staple");
            let (rita, rita_csrf) = web.session("rita", "correct horse battery staple");
            let list = web.get("/alerts", &val);
            assert!(list.body.contains(&format!("/alerts/{alert}")) && list.body.contains(&rule), "{}", list.body);
            assert!(web.get("/alerts?severity=informational", &val).body.contains("No alerts match"));
            let page = web.get(&format!("/alerts/{alert}"), &val);
            assert_eq!(page.status, 200);
            assert!(page.body.contains("dropper.com") && !page.body.contains("Triage"), "{}", page.body);
            let post = |cookie: &str, path: &str, fields: &[(&str, &str)]| web.post_form(path, cookie, fields);
            let classify = format!("/alerts/{alert}/classify");
            let refused = post(&val, &classify, &[("csrf_token", &val_csrf), ("classification", "true_positive")]);
            assert_eq!(refused.status, 403);
            assert_eq!(post(&rita, &classify, &[("classification", "true_positive")]).status, 403, "no CSRF token");

            let page = web.get(&format!("/alerts/{alert}"), &rita);
            assert!(page.body.contains("Triage") && !page.body.contains("false_positive"), "approvers only");
            let status = format!("/alerts/{alert}/status");
            let set =
                post(&rita, &status, &[("csrf_token", &rita_csrf), ("status", "in_progress"), ("comment", "on it")]);
            assert_eq!(set.status, 200, "{}", set.body);
            assert!(set.body.contains("Status set to in progress") && set.body.contains("badge in_progress"));
            let fp = post(&rita, &classify, &[("csrf_token", &rita_csrf), ("classification", "false_positive")]);
            assert_eq!(fp.status, 403, "{}", fp.body);
            assert!(fp.body.contains("approver role"), "{}", fp.body);
            let tp = post(&rita, &classify, &[("csrf_token", &rita_csrf), ("classification", "true_positive")]);
            assert_eq!(tp.status, 200, "{}", tp.body);
            assert!(tp.body.contains("Classified true positive"), "{}", tp.body);

            let list = web.get("/investigations", &val);
            assert!(list.body.contains(&format!("/investigations/{inv}")), "{}", list.body);
            let page = web.get(&format!("/investigations/{inv}"), &val);
            assert!(page.body.contains("Evidence and verdicts") && !page.body.contains("Terminate investigation"));
            assert!(
                page.body.contains("<td>file</td>") && page.body.contains("dropper.com"),
                "each entity with its verdict"
            );
            let terminate = format!("/investigations/{inv}/terminate");
            assert_eq!(post(&val, &terminate, &[("csrf_token", &val_csrf)]).status, 403);
            assert!(web.get(&format!("/investigations/{inv}"), &rita).body.contains("Terminate investigation"));
            let done = post(&rita, &terminate, &[("csrf_token", &rita_csrf), ("comment", "handled by hand")]);
            assert_eq!(done.status, 303, "{}", done.body);
        })
        .await;
        let path = format!("/api/v1/investigations/{investigation}");
        let shown = env.admin(move |c| c.get(&path)).await.expect("investigation");
        assert_eq!(shown["status"], "terminated_by_user", "{shown}");

        // Semi-automatic: the proposed quarantine waits, and an approver
        // approves it on the investigation's own page.
        let body = json!({ "automation_level": "semi_any" });
        env.admin(move |c| c.patch("/api/v1/device-groups/default", &body)).await.expect("automation semi");
        let mut second = picket_e2e::eicar();
        second.extend_from_slice(b"\n\n");
        let dropped = temp.join("second.com");
        std::fs::write(&dropped, second).expect("drop");
        let scan = json!({ "kind": "scan", "params": { "paths": [temp] }, "comment": "e2e" });
        let path = format!("/api/v1/devices/{device}/actions");
        let a = env.admin(move |c| c.post(&path, &scan)).await.expect("scan");
        let scan_id = a["id"].as_str().expect("id").to_string();
        eventually!(30, "scan done", env.action_status(&scan_id).await == "succeeded");
        let want = dropped.display().to_string();
        let mut pending: (String, String);
        eventually!(30, "a quarantine waits for approval", {
            let list = env.admin(|c| c.get("/api/v1/investigations")).await.expect("list");
            let found =
                list["items"].as_array().into_iter().flatten().find(|i| i["subject"]["path"] == want.as_str()).cloned();
            pending = (String::new(), String::new());
            if let Some(i) = found {
                let id = i["id"].as_str().unwrap_or_default().to_string();
                let path = format!("/api/v1/investigations/{id}");
                let full = env.admin(move |c| c.get(&path)).await.expect("investigation");
                let waiting = full["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["status"] == "pending_approval" && a["kind"] == "stop_and_quarantine")
                    .and_then(|a| a["id"].as_str().map(String::from));
                if let Some(action) = waiting {
                    pending = (id, action);
                }
            }
            !pending.0.is_empty()
        });
        let (inv, action) = pending;
        let body = json!({"name": "abe", "role": "approver", "password": "correct horse battery staple"});
        env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        let web = env.web();
        let (inv2, action2) = (inv.clone(), action.clone());
        blocking(move || {
            let (rita, _) = web.session("rita", "correct horse battery staple");
            let (abe, abe_csrf) = web.session("abe", "correct horse battery staple");
            let approve = format!("action=\"/actions/{action2}/approve\"");
            assert!(!web.get(&format!("/investigations/{inv2}"), &rita).body.contains(&approve), "not for a responder");
            let page = web.get(&format!("/investigations/{inv2}"), &abe);
            assert!(page.body.contains(&approve) && page.body.contains("href=\"#evidence\""), "{}", page.body);
            let back = format!("/investigations/{inv2}");
            let done = web.post_form(
                &format!("/actions/{action2}/approve"),
                &abe,
                &[("csrf_token", &abe_csrf), ("back", &back)],
            );
            assert_eq!(done.status, 303, "{}", done.body);
            assert_eq!(done.header("location"), back, "back to the investigation");
        })
        .await;
        eventually!(30, "quarantined", !dropped.exists());
        assert_ne!(env.action_status(&action).await, "pending_approval");
        let _ = inv;
    }
}

/// The text of the first `<pre class="secret">` on a page.
fn secret_in(body: &str) -> String {
    let at = body.find("<pre class=\"secret\">").expect("a secret shown") + "<pre class=\"secret\">".len();
    body[at..].split('<').next().unwrap_or_default().to_string()
}

/// Settings are for admins: groups and automation levels, an enrollment
/// token whose command enrolls a real device, a user whose one-time
/// password signs in and who is then disabled, and the audit log with
/// its CSV. Everyone else is refused, and not shown the way there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_manage_groups_tokens_and_users_from_settings_and_nobody_else_can() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let body = json!({"name": "abe", "role": "approver", "password": "correct horse battery staple"});
        env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        let password = env.admin_password();
        let web = env.web();
        let (command, carl_password) = blocking(move || {
            let (abe, abe_csrf) = web.session("abe", "correct horse battery staple");
            assert!(!web.get("/", &abe).body.contains("href=\"/settings\""), "no way to settings for an approver");
            assert_eq!(web.get("/settings", &abe).status, 403);
            assert_eq!(web.get("/settings/audit.csv", &abe).status, 403);
            let try_create = web.post_form(
                "/settings/users",
                &abe,
                &[("csrf_token", &abe_csrf), ("name", "mallory"), ("role", "admin")],
            );
            assert_eq!(try_create.status, 403);

            let (admin, csrf) = web.session("admin", &password);
            assert!(web.get("/", &admin).body.contains("href=\"/settings\""));
            let page = web.get("/settings", &admin);
            assert_eq!(page.status, 200);
            assert!(page.body.contains("Device groups") && page.body.contains(">abe<"), "{}", page.body);
            let post = |path: &str, fields: &[(&str, &str)]| {
                let mut form = vec![("csrf_token", csrf.as_str())];
                form.extend_from_slice(fields);
                web.post_form(path, &admin, &form)
            };
            // Without the token, nothing.
            assert_eq!(web.post_form("/settings/groups", &admin, &[("name", "x")]).status, 403);

            let made = post("/settings/groups", &[("name", "labs"), ("automation_level", "semi_core")]);
            assert_eq!(made.status, 200, "{}", made.body);
            assert!(made.body.contains("Group <strong>labs</strong> created"), "{}", made.body);
            assert_eq!(post("/settings/groups", &[("name", "labs"), ("automation_level", "full")]).status, 409);
            assert_eq!(post("/settings/groups", &[("name", "bad name!"), ("automation_level", "full")]).status, 400);
            assert_eq!(post("/settings/groups/labs", &[("automation_level", "warp")]).status, 400);
            let changed = post("/settings/groups/labs", &[("automation_level", "none")]);
            assert!(changed.body.contains("automation level <strong>none</strong>"), "{}", changed.body);

            let token =
                post("/settings/enrollment-tokens", &[("group", "labs"), ("max_uses", "1"), ("expires_in_hours", "2")]);
            assert_eq!(token.status, 200, "{}", token.body);
            let command = secret_in(&token.body);
            assert!(command.starts_with("picket-agent enroll --coordinator "), "{command}");
            assert_eq!(
                post(
                    "/settings/enrollment-tokens",
                    &[("group", "labs"), ("max_uses", "many"), ("expires_in_hours", "2")]
                )
                .status,
                400
            );

            let user = post("/settings/users", &[("name", "carl"), ("role", "responder")]);
            assert_eq!(user.status, 200, "{}", user.body);
            let carl_password = secret_in(&user.body);
            assert_eq!(carl_password.len(), 24);
            let (carl, _) = web.session("carl", &carl_password);
            assert_eq!(web.get("/", &carl).status, 200);
            assert_eq!(post("/settings/users/admin/disable", &[]).status, 409, "not yourself");
            let disabled = post("/settings/users/carl/disable", &[]);
            assert!(disabled.body.contains("disabled; their sessions ended"), "{}", disabled.body);
            assert_eq!(web.get("/", &carl).status, 303, "carl's session ended");
            assert_eq!(web.sign_in("carl", &carl_password).status, 401);

            let log = web.get("/settings/audit", &admin);
            assert!(log.body.contains("/settings/users/carl/disable") && log.body.contains("login_failed"));
            let only_carl = web.get("/settings/audit?actor=carl", &admin);
            assert!(only_carl.body.contains("login_failed") && !only_carl.body.contains("/settings/groups"));
            let groups = web.get("/settings/audit?text=GROUPS/LABS", &admin);
            assert!(groups.body.contains("/settings/groups/labs") && !groups.body.contains("login_failed"));
            // A refused create keeps what was typed, and says why in its section.
            let refused = post("/settings/users", &[("name", "Bad Name"), ("role", "approver")]);
            assert_eq!(refused.status, 400);
            let users = refused.body.split("id=\"users\"").nth(1).unwrap_or_default();
            assert!(users.contains("class=\"error\"") && users.contains("value=\"Bad Name\""), "{}", refused.body);
            assert!(users.contains("<option value=\"approver\" selected>"), "{}", refused.body);
            let filtered = web.get("/settings/audit.csv?actor=carl", &admin);
            assert!(filtered.body.lines().skip(1).all(|l| l.contains(",carl,")), "{}", filtered.body);
            let csv = web.get("/settings/audit.csv", &admin);
            assert!(csv.header("content-type").starts_with("text/csv"));
            assert!(csv.body.starts_with("id,at,actor,action,target,result,detail\n"));
            assert!(csv.body.contains("/settings/groups/labs"), "{}", csv.body);
            (command, carl_password)
        })
        .await;
        // The command shown enrolls a real device into the group.
        let mut words = command.split_whitespace();
        let mut arg = |name: &str| words.by_ref().skip_while(|w| *w != name).nth(1).expect("argument").to_string();
        let (token, fingerprint) = (arg("--token"), arg("--ca-fingerprint"));
        let device = env
            .enroll_with("from-settings", &json!({"token": token, "ca_fingerprint": fingerprint}))
            .await
            .expect("enrolled with the console's token");
        assert_eq!(env.device(device).await["group"], "labs");
        assert!(!carl_password.is_empty());
    }
}

/// Detection content from the console: admins upload rule files (the
/// script's JSON with the CSRF header) and see which did not compile;
/// approvers add and remove indicators, and a refused one comes back with
/// what was typed; viewers see both and change neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_indicators_are_managed_from_the_console_by_role() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        for (name, role) in [("abe", "approver"), ("val", "viewer")] {
            let body = json!({"name": name, "role": role, "password": "correct horse battery staple"});
            env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        }
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            let (val, val_csrf) = web.session("val", "correct horse battery staple");
            let (abe, abe_csrf) = web.session("abe", "correct horse battery staple");
            let (admin, admin_csrf) = web.session("admin", &password);
            let page = web.get("/detection", &val);
            assert_eq!(page.status, 200);
            assert!(!page.body.contains("rules-upload") && !page.body.contains("Add indicator"), "{}", page.body);
            let good = json!({"name": "good.yar", "source": "rule console_good { strings: $a = \"picket console\" condition: $a }"});
            let bad = json!({"name": "bad.yar", "source": "rule console_bad { condition: no_such_thing }"});
            let upload = |cookie: &str, csrf: &str, files: serde_json::Value| {
                web.post_json("/detection/rules", cookie, &[("X-CSRF-Token", csrf)], &json!({ "files": files }))
            };
            assert_eq!(upload(&val, &val_csrf, json!([good])).status, 403);
            assert_eq!(upload(&abe, &abe_csrf, json!([good])).status, 403, "admins only");
            assert_eq!(upload(&admin, "", json!([good])).status, 403, "no CSRF token");
            let none = upload(&admin, &admin_csrf, json!([bad]));
            assert_eq!(none.status, 422, "{}", none.body);
            assert!(none.body.contains("bad.yar") && none.body.contains("nothing was stored"), "{}", none.body);
            let some = upload(&admin, &admin_csrf, json!([good, bad]));
            assert_eq!(some.status, 201, "{}", some.body);
            let answer: serde_json::Value = serde_json::from_str(&some.body).expect("json");
            let version = answer["version"].as_str().expect("version");
            let page = web.get(&format!("/detection?uploaded={version}"), &val);
            assert!(page.body.contains("badge active\">current") && page.body.contains("bad.yar"), "{}", page.body);

            let add = |cookie: &str, csrf: &str, fields: &[(&str, &str)]| {
                let mut form = vec![("csrf_token", csrf)];
                form.extend_from_slice(fields);
                web.post_form("/detection/indicators", cookie, &form)
            };
            let sha = "ab".repeat(32);
            assert_eq!(add(&val, &val_csrf, &[("sha256", &sha), ("action", "block")]).status, 403);
            let refused = add(&abe, &abe_csrf, &[("sha256", "not-a-hash"), ("action", "block"), ("comment", "kept text")]);
            assert_eq!(refused.status, 400);
            assert!(refused.body.contains("is not a SHA-256") && refused.body.contains("value=\"kept text\""));
            assert!(refused.body.contains("value=\"not-a-hash\""), "what was typed comes back");
            let past = add(&abe, &abe_csrf, &[("sha256", &sha), ("action", "block"), ("expires", "2001-01-01T00:00")]);
            assert_eq!(past.status, 422, "{}", past.body);
            let added =
                add(&abe, &abe_csrf, &[("sha256", &sha), ("action", "block"), ("comment", "dropper"), ("expires", "2099-01-01T00:00")]);
            assert_eq!(added.status, 200, "{}", added.body);
            assert!(added.body.contains(&sha) && added.body.contains("2099-01-01T00:00:00"), "{}", added.body);
            let remove = format!("/detection/indicators/{sha}/delete");
            assert_eq!(web.post_form(&remove, &val, &[("csrf_token", &val_csrf)]).status, 403);
            let removed = web.post_form(&remove, &abe, &[("csrf_token", &abe_csrf)]);
            assert_eq!(removed.status, 200);
            assert!(removed.body.contains("No indicators in force"), "{}", removed.body);
            assert_eq!(web.post_form(&remove, &abe, &[("csrf_token", &abe_csrf)]).status, 404);
        })
        .await;
    }
}

/// The device page's other actions with a real agent: a path scan, a
/// process killed by PID, a sample and a package collected and then
/// downloaded from the page (responders only); a refused request comes
/// back with what was typed, and the timeline holds it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_device_page_runs_more_actions_and_serves_packages_and_samples() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let (device, dir) = env.enroll("console-more").await;
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "agent online", env.device_status(device).await == "online");
        for (name, role) in [("rita", "responder"), ("val", "viewer")] {
            let body = json!({"name": name, "role": role, "password": "correct horse battery staple"});
            env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        }
        let lab = tempfile::tempdir().expect("lab");
        let sample = lab.path().join("suspicious.bin");
        std::fs::write(&sample, b"a sample for the console").expect("write");
        let mut target = picket_e2e::Target::sleeper();
        let (pid, lab_path, sample_path) =
            (target.pid().to_string(), lab.path().display().to_string(), sample.display().to_string());
        let web = env.web();
        let ids = blocking(move || {
            let (rita, csrf) = web.session("rita", "correct horse battery staple");
            let request = |fields: &[(&str, &str)]| {
                let mut form = vec![("csrf_token", csrf.as_str())];
                form.extend_from_slice(fields);
                web.post_form(&format!("/devices/{device}/actions"), &rita, &form)
            };
            // Refused, and the form keeps what was typed.
            let bad = request(&[
                ("kind", "isolate_selective"),
                ("exclusions", "cidr=10.0.0.0/8,port=http"),
                ("comment", "keep the patch server"),
            ]);
            assert_eq!(bad.status, 400, "{}", bad.body);
            assert!(bad.body.contains("bad port") && bad.body.contains("cidr=10.0.0.0/8,port=http</textarea>"));
            assert!(bad.body.contains("value=\"keep the patch server\""), "{}", bad.body);
            let bad = request(&[("kind", "kill_process"), ("process", "init"), ("comment", "x")]);
            assert!(bad.body.contains("neither a PID nor a SHA-256") && bad.body.contains("value=\"init\""));

            let mut ids = Vec::new();
            for fields in [
                vec![("kind", "path_scan"), ("paths", lab_path.as_str()), ("comment", "look here")],
                vec![("kind", "kill_process"), ("process", pid.as_str()), ("comment", "stray sleeper")],
                vec![("kind", "request_sample"), ("file", sample_path.as_str()), ("comment", "for the lab")],
                vec![("kind", "collect_package"), ("comment", "evidence")],
            ] {
                let r = request(&fields);
                assert_eq!(r.status, 303, "{fields:?}: {}", r.body);
                ids.push(action_in(&r.header("location")));
            }
            ids
        })
        .await;
        for id in &ids {
            eventually!(
                60,
                format!("{id} done"),
                matches!(env.action_status(id).await.as_str(), "succeeded" | "failed")
            );
            assert_eq!(env.action_status(id).await, "succeeded", "{}", env.action(id).await);
        }
        assert!(target.exited(), "the process was killed");
        let web = env.web();
        let package = ids[3].clone();
        blocking(move || {
            let (rita, _) = web.session("rita", "correct horse battery staple");
            let (val, _) = web.session("val", "correct horse battery staple");
            let page = web.get(&format!("/devices/{device}"), &rita);
            assert!(page.body.contains("Timeline") && page.body.contains("request_sample"), "{}", page.body);
            let sample_link = page.body.split("href=\"/samples/").nth(1).and_then(|s| s.split('"').next());
            let sample_link = format!("/samples/{}", sample_link.expect("a sample link"));
            assert!(page.body.contains(&format!("href=\"/actions/{package}/package\"")), "{}", page.body);
            let zip = web.get(&sample_link, &rita);
            assert_eq!(zip.status, 200);
            assert!(zip.header("content-type").starts_with("application/zip"));
            let gz = web.get(&format!("/actions/{package}/package"), &rita);
            assert_eq!(gz.status, 200);
            assert!(gz.header("content-type").starts_with("application/gzip"));
            assert!(web.get(&format!("/devices/{device}"), &val).body.contains("a responder can download it"));
            assert_eq!(web.get(&sample_link, &val).status, 403);
            assert_eq!(web.get(&format!("/actions/{package}/package"), &val).status, 403);
            assert_eq!(web.get(&format!("/samples/{}", "0".repeat(64)), &rita).status, 404);
        })
        .await;
    }
}

/// Every state-changing console route, three ways: without the CSRF token,
/// with a wrong one (both 403 even for an admin), and as a viewer with the
/// right one (403: a viewer changes nothing) — and afterwards nothing has
/// changed: the same actions, users, groups, indicators and bundles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_change_needs_the_csrf_token_and_a_viewer_gets_403_on_each() {
    for db in databases().await {
        let env = TestEnv::start(&db).await;
        let (device, _) = env.enroll("csrf-target").await;
        let body = json!({"kind": "offboard", "params": {}, "comment": "pending"});
        let path = format!("/api/v1/devices/{device}/actions");
        let pending = env.admin(move |c| c.post(&path, &body)).await.expect("pending action");
        let action = pending["id"].as_str().expect("id").to_string();
        let body = json!({"name": "val", "role": "viewer", "password": "correct horse battery staple"});
        env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
        let snapshot = || async {
            let mut out = Vec::new();
            for path in [
                "/api/v1/actions?limit=1000",
                "/api/v1/users",
                "/api/v1/device-groups",
                "/api/v1/indicators?all=true",
                "/api/v1/rules",
                "/api/v1/enrollment-tokens",
                "/api/v1/api-tokens",
            ] {
                out.push(env.admin(move |c| c.get(path)).await.expect("snapshot").to_string());
            }
            out
        };
        let before = snapshot().await;
        let password = env.admin_password();
        let web = env.web();
        blocking(move || {
            let (admin, admin_csrf) = web.session("admin", &password);
            let (val, val_csrf) = web.session("val", "correct horse battery staple");
            let any = uuid::Uuid::new_v4();
            let sha = "cd".repeat(32);
            let routes: Vec<(String, Vec<(&str, &str)>)> = vec![
                (format!("/devices/{device}/actions"), vec![("kind", "isolate"), ("comment", "x")]),
                (
                    format!("/devices/{device}/actions"),
                    vec![("kind", "offboard"), ("comment", "x"), ("confirm_hostname", "x")],
                ),
                (format!("/actions/{action}/approve"), vec![("comment", "x")]),
                (format!("/actions/{action}/reject"), vec![("comment", "x")]),
                (format!("/actions/{action}/cancel"), vec![("comment", "x")]),
                (format!("/actions/{action}/undo"), vec![("comment", "x")]),
                ("/actions/decide".into(), vec![("id", action.as_str()), ("decision", "approve")]),
                ("/actions/decide".into(), vec![("id", action.as_str()), ("decision", "reject")]),
                (format!("/alerts/{any}/status"), vec![("status", "resolved")]),
                (format!("/alerts/{any}/classify"), vec![("classification", "true_positive")]),
                (format!("/investigations/{any}/terminate"), vec![]),
                (format!("/investigations/{any}/approve-expansion"), vec![]),
                ("/detection/indicators".into(), vec![("sha256", sha.as_str()), ("action", "block")]),
                (format!("/detection/indicators/{sha}/delete"), vec![]),
                ("/settings/groups".into(), vec![("name", "g"), ("automation_level", "full")]),
                ("/settings/groups/default".into(), vec![("automation_level", "none")]),
                (
                    "/settings/enrollment-tokens".into(),
                    vec![("group", "default"), ("max_uses", "1"), ("expires_in_hours", "1")],
                ),
                ("/settings/users".into(), vec![("name", "mallory"), ("role", "admin")]),
                ("/settings/users/val/disable".into(), vec![]),
                ("/settings/users/admin/reset-password".into(), vec![]),
                (format!("/settings/api-tokens/{any}/revoke"), vec![]),
                (format!("/settings/enrollment-tokens/{any}/revoke"), vec![]),
                (
                    "/account/password".into(),
                    vec![("current_password", "x"), ("new_password", "y"), ("confirm_password", "y")],
                ),
                ("/logout".into(), vec![]),
            ];
            for (path, fields) in &routes {
                fn with<'a>(fields: &[(&'a str, &'a str)], token: &'a str) -> Vec<(&'a str, &'a str)> {
                    let mut form = fields.to_vec();
                    if !token.is_empty() {
                        form.push(("csrf_token", token));
                    }
                    form
                }
                assert_eq!(web.post_form(path, &admin, &with(fields, "")).status, 403, "{path} without a token");
                let wrong = "0".repeat(64);
                assert_eq!(web.post_form(path, &admin, &with(fields, &wrong)).status, 403, "{path}: wrong token");
                let theirs = with(fields, &val_csrf);
                assert_eq!(web.post_form(path, &admin, &theirs).status, 403, "{path} with another session's token");
                if path != "/logout" && path != "/account/password" {
                    let r = web.post_form(path, &val, &theirs);
                    assert_eq!(r.status, 403, "{path} as a viewer: {}", r.body);
                }
            }
            let rules = json!({"files": [{"name": "x.yar", "source": "rule x { condition: true }"}]});
            assert_eq!(web.post_json("/detection/rules", &admin, &[], &rules).status, 403);
            assert_eq!(web.post_json("/detection/rules", &val, &[("X-CSRF-Token", &val_csrf)], &rules).status, 403);
            // Both sessions are still alive.
            assert_eq!(web.get("/", &admin).status, 200);
            assert_eq!(web.get("/", &val).status, 200);
            let _ = admin_csrf;
        })
        .await;
        assert_eq!(snapshot().await, before, "nothing changed");
    }
}
