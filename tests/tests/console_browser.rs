//! The console in a real browser (headless Chromium over WebDriver): sign
//! in through the form, a hostile host name shown as text and never run,
//! a responder's request from the device page, an approver's decision
//! from the pending list, the two-person rule as the page shows it, and
//! live updates arriving without a reload.
//!
//! With `PICKET_SCREENSHOTS=DIR` it also saves the screenshots the README
//! shows (`docs/console/screenshots.sh` sets it).

use std::path::PathBuf;
use std::process::Command;

use picket_e2e::browser::Browser;
use picket_e2e::{agent_binary, eventually, Db, TestEnv};
use serde_json::json;

/// A host name that is also markup: a console that inserted it as HTML
/// would run its `onerror`.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

const PASSWORD: &str = "correct horse battery staple";

/// Runs `f` (blocking WebDriver calls) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn shot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("PICKET_SCREENSHOTS") {
        browser.screenshot(&PathBuf::from(dir).join(format!("{name}.png")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_analyst_and_an_approver_work_the_console_in_chromium() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (web_server, _) = env.enroll("web-01").await;
    let (db_server, db_dir) = env.enroll("db-01").await;
    let _agent = env.start_agent(db_server, &db_dir);
    eventually!(10, "agent online", env.device_status(db_server).await == "online");

    // A device whose kernel reports a hostile host name: the real agent
    // binary enrolls from a private UTS namespace with that name set.
    let token = env.enrollment_token(1).await;
    let hostile_dir = tempfile::tempdir().expect("state dir");
    let enrolled = Command::new("unshare")
        .args(["--uts", "--", "sh", "-c", r#"printf %s "$0" > /proc/sys/kernel/hostname && exec "$@""#, HOSTILE])
        .arg(agent_binary())
        .args(["enroll", "--coordinator", &env.agent_addr().to_string()])
        .args(["--token", token["token"].as_str().expect("token")])
        .args(["--ca-fingerprint", token["ca_fingerprint"].as_str().expect("fingerprint")])
        .arg("--state-dir")
        .arg(hostile_dir.path().join("state"))
        .output()
        .expect("run unshare");
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let devices = env.admin(|c| c.get("/api/v1/devices?limit=100")).await.expect("devices");
    let hostile = devices["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|d| d["hostname"] == HOSTILE)
        .map(|d| d["id"].as_str().expect("id").to_string())
        .expect("the hostile device enrolled under its name");

    for (name, role) in [("rita", "responder"), ("abe", "approver")] {
        let body = json!({"name": name, "role": role, "password": PASSWORD});
        env.admin(move |c| c.post("/api/v1/users", &body)).await.expect("create user");
    }
    let base = env.api_url();
    let browser = blocking(Browser::start).await;

    // Rita signs in, finds the hostile device and asks to offboard it.
    let (browser, pending) = {
        let base = base.clone();
        let hostile = hostile.clone();
        blocking(move || {
            browser.goto(&format!("{base}/devices"));
            browser.wait_for("#username", 10);
            assert!(browser.url().contains("/login?next=/devices"), "{}", browser.url());
            shot(&browser, "login");
            browser.type_into(&browser.find("#username"), "rita");
            browser.type_into(&browser.find("#password"), PASSWORD);
            browser.click(&browser.find("section.signin button[type=submit]"));
            browser.wait_for("form.filters", 10);
            assert!(browser.url().ends_with("/devices"), "back where she was going: {}", browser.url());
            shot(&browser, "devices");
            // On a phone-sized screen nothing runs off the side.
            browser.resize(420, 860);
            let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth;");
            assert!(
                overflow.as_i64().is_some_and(|o| o <= 0),
                "the device list overflows a narrow screen by {overflow}"
            );
            shot(&browser, "devices-narrow");
            browser.resize(1280, 900);

            // The host name is text in a link: no image element, no alert.
            let link = browser.find(&format!("a[href='/devices/{hostile}']"));
            assert_eq!(browser.text(&link), HOSTILE);
            assert_eq!(browser.execute("return document.querySelectorAll('main img').length;"), json!(0));
            assert_eq!(browser.alert_text(), None, "no script ran");

            browser.click(&link);
            browser.wait_for("section.actions", 10);
            assert_eq!(browser.text(&browser.find("h1")).trim_end_matches(" offline").trim(), HOSTILE);
            // Offboarding wants the host name typed exactly.
            browser.type_into(&browser.find("#offboard-confirm"), "web-01");
            browser.type_into(&browser.find("#offboard-comment"), "decommissioned");
            browser.click(&browser.find("form.danger button[type=submit]"));
            let refusal = browser.wait_for("p.error", 10);
            assert!(browser.text(&refusal).contains("does not match"), "{}", browser.text(&refusal));
            // What was typed is still there; the host name is corrected.
            let confirm = browser.find("#offboard-confirm");
            assert_eq!(
                browser.execute("return document.querySelector('#offboard-comment').value;"),
                json!("decommissioned")
            );
            browser.clear(&confirm);
            browser.type_into(&confirm, HOSTILE);
            browser.click(&browser.find("form.danger button[type=submit]"));
            browser.wait_for("#timeline", 10);
            assert!(browser.url().contains("/actions/"), "{}", browser.url());
            let status = browser.text(&browser.find("h1 .badge"));
            assert_eq!(status, "pending approval");
            assert_eq!(browser.alert_text(), None);
            let pending =
                browser.url().rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_string();
            // A responder is offered no approval.
            assert!(browser.find_all("form.decide").is_empty());
            shot(&browser, "action");
            browser.sign_out();
            (browser, pending)
        })
        .await
    };

    // Abe opens the pending tab; a second request arrives while he looks.
    let browser = {
        let base = base.clone();
        blocking(move || {
            browser.sign_in(&base, "abe", PASSWORD);
            shot(&browser, "overview");
            browser.goto(&format!("{base}/actions?tab=pending"));
            browser.wait_for("#live table", 10);
            assert_eq!(browser.find_all("#live tbody tr").len(), 1);
            browser.execute("window.picketTestMarker = 1; return null;");
            browser
        })
        .await
    };
    let body = json!({"kind": "offboard", "params": {}, "comment": "second wave"});
    let path = format!("/api/v1/devices/{web_server}/actions");
    let second = env.admin(move |c| c.post(&path, &body)).await.expect("request");
    let second = second["id"].as_str().expect("id").to_string();
    let ticked = pending.clone();
    let browser = blocking(move || {
        let arrived = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while browser.find_all("#live tbody tr").len() < 2 {
            assert!(
                std::time::Instant::now() < arrived,
                "the new pending action did not appear within 10 s: {}",
                browser.execute("return [document.hidden, document.scripts.length, document.querySelectorAll('[data-live][id]').length, document.activeElement.tagName].join(' ');")
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(browser.execute("return window.picketTestMarker;"), json!(1), "updated without a reload");
        shot(&browser, "actions-pending");

        // Abe ticks Rita's request and approves it from the list.
        browser.click(&browser.find(&format!("input[type=checkbox][value='{ticked}']")));
        browser.type_into(&browser.find("#bulk-comment"), "confirmed with the owner");
        browser.click(&browser.find("form.bulk button[value=approve]"));
        let outcome = browser.wait_for("p.notice", 10);
        assert_eq!(browser.text(&outcome), "1 of 1 approved.");
        browser
    })
    .await;
    assert_eq!(env.action_status(&pending).await, "queued", "approved, waiting for the offline device");

    // Abe asks for something himself: his page says another must decide.
    let browser = {
        let base = base.clone();
        blocking(move || {
            browser.goto(&format!("{base}/devices/{db_server}"));
            browser.wait_for("section.actions", 10);
            shot(&browser, "device");
            let hostname = picket_agent::sysinfo::hostname();
            browser.type_into(&browser.find("#offboard-confirm"), &hostname);
            browser.type_into(&browser.find("#offboard-comment"), "moving to the new cluster");
            browser.click(&browser.find("form.danger button[type=submit]"));
            browser.wait_for("#timeline", 10);
            let page = browser.execute("return document.querySelector('main').innerText;");
            assert!(page.as_str().unwrap_or_default().contains("two-person rule"), "{page}");
            assert!(browser.find_all("form.decide").is_empty(), "no approve button for the requestor");
            browser
        })
        .await
    };
    // Nothing was decided for him, and the second request is untouched.
    assert_eq!(env.action_status(&second).await, "pending_approval");

    // The admin's settings: every section renders in the browser.
    let admin_password = env.admin_password();
    blocking(move || {
        browser.sign_out();
        browser.sign_in(&base, "admin", &admin_password);
        browser.goto(&format!("{base}/settings"));
        for section in ["#groups", "#enrollment", "#users", "#api-tokens"] {
            browser.find(section);
        }
        shot(&browser, "settings");

        // Rules uploaded through the page's script from real files.
        let rules = tempfile::tempdir().expect("rules dir");
        let good = rules.path().join("good.yar");
        let bad = rules.path().join("bad.yar");
        std::fs::write(&good, "rule console_good { strings: $a = \"picket console\" condition: $a }").expect("good");
        std::fs::write(&bad, "rule console_bad { condition: no_such_thing }").expect("bad");
        browser.goto(&format!("{base}/detection"));
        browser.type_into(&browser.find("#rule-files"), &bad.display().to_string());
        browser.click(&browser.find("#rules-upload button[type=submit]"));
        let refusal = browser.wait_for("#upload-result ul.errors", 15);
        assert!(browser.text(&refusal).contains("bad.yar"), "{}", browser.text(&refusal));
        assert!(browser.url().ends_with("/detection"), "stayed on the page");
        let files = format!("{}\n{}", good.display(), bad.display());
        let page = browser.url();
        let input = browser.find("#rule-files");
        browser.clear(&input);
        browser.type_into(&input, &files);
        browser.click(&browser.find("#rules-upload button[type=submit]"));
        let uploaded = browser.wait_to_leave(&page, 15);
        assert!(uploaded.contains("/detection?uploaded="), "{uploaded}");
        let current = browser.text(&browser.find("#rules tbody tr"));
        assert!(current.contains("current") && current.contains("bad.yar"), "{current}");
        shot(&browser, "detection");
    })
    .await;
}
