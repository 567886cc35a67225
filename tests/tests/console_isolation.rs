//! The console's main path in real Chromium with a real agent isolated for
//! real: a responder requests isolation from the device page, an approver
//! in a second browser approves it from the action center, both watch it
//! reach `succeeded` without reloading, the device's nftables cut it off,
//! the responder undoes it, and the CSV export holds both actions.
//!
//! Everything lives in network namespaces this test creates: the
//! coordinator and both browsers in one, the device in another, joined by
//! a veth pair. The host's own network and ruleset are never touched.

use picket_agent::enroll::{enroll, EnrollOptions};
use picket_agent::state::StateDir;
use picket_coordinator::client::Client;
use picket_coordinator::Config;
use picket_e2e::browser::Browser;
use picket_e2e::netns::{can_run, on, rand_id, sh, start_coordinator, thread_netns, wait, Netns};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";

/// `/actions/{id}` in a browser's URL.
fn action_id(url: &str) -> String {
    url.rsplit("/actions/").next().unwrap_or_default().split('?').next().unwrap_or_default().to_string()
}

/// Waits, without navigating, until the action page's live section shows
/// `status`; the page must not have been reloaded on the way.
fn watch_until(browser: &Browser, status: &str) {
    browser.execute("window.picketTestMarker = 1; return null;");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while browser.find_all(&format!("#live .badge.{status}")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the page never showed {status}: {}", browser.url());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(browser.execute("return window.picketTestMarker;"), json!(1), "updated in place, not reloaded");
}

#[test]
fn a_responder_isolates_through_an_approver_and_undoes_it_in_chromium() {
    if !can_run("the console isolation test") {
        return;
    }
    picket_e2e::init_logs();
    let id = rand_id();
    let (coord, dev) = (Netns::new("wc", &id), Netns::new("wd", &id));
    sh(&["ip", "-n", &dev.0, "link", "add", "eth0", "type", "veth", "peer", "name", "dev0", "netns", &coord.0]);
    sh(&["ip", "-n", &coord.0, "addr", "add", "10.78.0.1/24", "dev", "dev0"]);
    sh(&["ip", "-n", &coord.0, "link", "set", "dev0", "up"]);
    sh(&["ip", "-n", &dev.0, "addr", "add", "10.78.0.2/24", "dev", "eth0"]);
    sh(&["ip", "-n", &dev.0, "link", "set", "eth0", "up"]);
    let (c_rt, d_rt) = (coord.runtime(), dev.runtime());
    assert_eq!(thread_netns(&c_rt), (coord.inode(), coord.inode()));
    assert_eq!(thread_netns(&d_rt), (dev.inode(), dev.inode()));

    // The coordinator, with isolation waiting for an approver.
    let data = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let mut config = Config {
        data_dir: data.path().join("coordinator"),
        agent_listen: "10.78.0.1:7443".parse().expect("addr"),
        api_listen: "127.0.0.1:7080".parse().expect("addr"),
        heartbeat_secs: 5,
        ..Config::default()
    };
    config.actions.approval_required_kinds = vec!["isolate".into()];
    let (base, token, ca) = start_coordinator(&c_rt, config, shutdown.clone());
    let api = |path: &str, body: Option<Value>| {
        let (base, ca, token, path) = (base.clone(), ca.clone(), token.clone(), path.to_string());
        coord.run(move || {
            let c = Client::with_ca(&base, &token, &ca).expect("client");
            match body {
                Some(b) => c.post(&path, &b),
                None => c.get(&path),
            }
            .unwrap_or_else(|e| panic!("{path}: {e}"))
        })
    };
    for (name, role) in [("rita", "responder"), ("abe", "approver")] {
        api("/api/v1/users", Some(json!({"name": name, "role": role, "password": PASSWORD})));
    }

    // A real agent in the device's namespace.
    let t = api("/api/v1/enrollment-tokens", Some(json!({})));
    let state = data.path().join("agent");
    let (tok, fp, st) = (
        t["token"].as_str().expect("t").to_string(),
        t["ca_fingerprint"].as_str().expect("fp").to_string(),
        state.clone(),
    );
    let device = on(&d_rt, async move {
        let options = EnrollOptions {
            coordinator: "10.78.0.1:7443".into(),
            token: tok,
            ca_fingerprint: fp,
            state: StateDir::new(st),
            force: false,
        };
        enroll(options).await.expect("enroll").device_id
    });
    let stop = CancellationToken::new();
    let agent = d_rt.spawn(picket_agent::session::run(picket_e2e::agent_config(&state), stop.clone()));
    wait("agent online", 20, || api(&format!("/api/v1/devices/{device}"), None)["status"] == "online");
    let device_tables = || sh(&["ip", "netns", "exec", &dev.0, "nft", "list", "tables"]);
    assert!(!device_tables().contains("inet picket"));

    // Rita asks to isolate the device from its page.
    let launcher = coord.exec_prefix();
    let (rita, isolation) = {
        let (base, launcher) = (base.clone(), launcher.clone());
        coord.run(move || {
            let rita = Browser::start_with(&launcher);
            rita.sign_in(&base, "rita", PASSWORD);
            rita.goto(&format!("{base}/devices/{device}"));
            rita.type_into(&rita.find("#action-comment"), "beaconing to a known C2");
            rita.click(&rita.find("button[value=isolate]"));
            rita.wait_for("#timeline", 10);
            assert_eq!(rita.text(&rita.find("h1 .badge")), "pending approval");
            let id = action_id(&rita.url());
            (rita, id)
        })
    };

    // Abe, in a second browser, approves it from the pending list and
    // watches it run.
    let abe = {
        let (base, launcher, isolation) = (base.clone(), launcher.clone(), isolation.clone());
        coord.run(move || {
            let abe = Browser::start_with(&launcher);
            abe.sign_in(&base, "abe", PASSWORD);
            abe.goto(&format!("{base}/actions?tab=pending"));
            abe.click(&abe.find(&format!("input[type=checkbox][value='{isolation}']")));
            abe.type_into(&abe.find("#bulk-comment"), "confirmed");
            abe.click(&abe.find("form.bulk button[value=approve]"));
            assert_eq!(abe.text(&abe.wait_for("p.notice", 10)), "1 of 1 approved.");
            abe.goto(&format!("{base}/actions/{isolation}"));
            watch_until(&abe, "succeeded");
            abe
        })
    };
    // Rita's page, open all along, got there by itself too.
    let rita = coord.run(move || {
        watch_until(&rita, "succeeded");
        rita
    });
    assert!(device_tables().contains("inet picket"), "the device is isolated by nftables");
    assert!(!sh(&["nft", "list", "tables"]).contains("inet picket"), "the host's ruleset was never touched");
    let shown = api(&format!("/api/v1/actions/{isolation}"), None);
    assert_eq!(shown["requestor"], "rita", "{shown}");
    assert_eq!(shown["decided_by"], "abe", "{shown}");

    // Rita undoes it; the release runs and the device is reachable again.
    let (rita, release) = {
        let base = base.clone();
        let isolation = isolation.clone();
        coord.run(move || {
            // The overview counts it, and the device list finds it by it.
            rita.goto(&format!("{base}/"));
            let tile = rita.find("a[href='/devices?containment=isolated']");
            let count = rita.execute("return document.querySelector(\"a[href='/devices?containment=isolated']\").closest('div').querySelector('dd').innerText;");
            assert_eq!(count, json!("1"));
            rita.click(&tile);
            rita.find(&format!("a[href='/devices/{device}']"));
            rita.goto(&format!("{base}/devices/{device}"));
            let state = rita.execute("return document.querySelector('#live-state').innerText;");
            assert!(state.as_str().unwrap_or_default().contains("isolated since"), "{state}");
            rita.goto(&format!("{base}/actions/{isolation}"));
            rita.type_into(&rita.find("#undo-comment"), "false alarm: a backup job");
            let page = rita.url();
            rita.click(&rita.find("form.decide button[type=submit]"));
            let release = action_id(&rita.wait_to_leave(&page, 10));
            rita.wait_for("#timeline", 10);
            assert_ne!(release, isolation);
            watch_until(&rita, "succeeded");
            rita.goto(&format!("{base}/"));
            let count = rita.execute(
                "return document.querySelector(\"a[href='/devices?containment=isolated']\").closest('div').querySelector('dd').innerText;",
            );
            assert_eq!(count, json!("0"), "released devices are not counted");
            (rita, release)
        })
    };
    assert!(!device_tables().contains("inet picket"), "released");
    let undone = api(&format!("/api/v1/actions/{release}"), None);
    assert_eq!(
        (undone["kind"].as_str(), undone["undoes"].as_str()),
        (Some("release_isolation"), Some(isolation.as_str()))
    );

    // The CSV export of the history, fetched by the signed-in browser.
    let csv = coord.run(move || {
        let csv = rita.execute(
            "const x = new XMLHttpRequest(); x.open('GET', '/actions.csv?tab=history', false); x.send(); \
             return x.status + '\\n' + x.responseText;",
        );
        drop((rita, abe));
        csv.as_str().unwrap_or_default().to_string()
    });
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("200"), "{csv}");
    assert!(lines.next().is_some_and(|h| h.starts_with("id,kind,device_id,")), "{csv}");
    let rows: Vec<&str> = lines.collect();
    let row = |id: &str| rows.iter().find(|r| r.starts_with(id)).copied().unwrap_or_else(|| panic!("{id} in {csv}"));
    assert!(row(&isolation).contains(",isolate,") && row(&isolation).contains(",succeeded,rita,"), "{csv}");
    assert!(row(&isolation).contains(",abe,"), "{csv}");
    assert!(row(&release).contains(",release_isolation,") && row(&release).contains(",succeeded,rita,"), "{csv}");

    stop.cancel();
    on(&d_rt, async move { agent.await.expect("join").expect("agent stops") });
    shutdown.cancel();
    drop((c_rt, d_rt));
}
