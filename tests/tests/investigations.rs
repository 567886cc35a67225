//! Automated investigations over a real agent: an alert opens an
//! investigation, the coordinator's verdict and the device group's
//! automation level decide — the file itself quarantined first under
//! `full`, pending approval under `semi_any` (then terminated), nothing
//! under `none` —, then the evidence finds the rest. The same malware at
//! another path is remediated too. The folder classes point at test
//! directories.

use std::path::{Path, PathBuf};

use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

/// EICAR with `pad` trailing newlines: still EICAR (≤ 128 bytes), another SHA-256.
fn eicar(pad: usize) -> Vec<u8> {
    let mut e = picket_e2e::eicar();
    e.extend(std::iter::repeat_n(b'\n', pad));
    e
}

/// A coordinator whose folder classes point into `lab` (temp = lab/temp,
/// core = lab/core) and whose agents look for copies in `search`.
async fn lab_env(lab: &Path, search: &str) -> TestEnv {
    let (l, search) = (lab.to_path_buf(), lab.join(search));
    TestEnv::start_with(&Db::Sqlite, move |c| {
        c.investigations.automatic = true;
        c.investigations.temp_folders = vec![l.join("temp").display().to_string()];
        c.investigations.core_folders = vec![l.join("core").display().to_string()];
        c.investigations.copy_search_paths = vec![search.display().to_string()];
    })
    .await
}

async fn scan(env: &TestEnv, device: Uuid, path: &Path) {
    let body = json!({ "kind": "scan", "params": { "paths": [path] }, "comment": "e2e" });
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("scan");
    let id = a["id"].as_str().expect("id").to_string();
    eventually!(30, "scan done", env.action_status(&id).await == "succeeded");
}

async fn investigation_of(env: &TestEnv, path: &Path) -> Value {
    let want = path.display().to_string();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let list = env.admin(|c| c.get("/api/v1/investigations")).await.expect("list");
        let found =
            list["items"].as_array().into_iter().flatten().find(|i| i["subject"]["path"] == want.as_str()).cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no investigation of {want}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn show(env: &TestEnv, id: &str) -> Value {
    let path = format!("/api/v1/investigations/{id}");
    env.admin(move |c| c.get(&path)).await.expect("investigation")
}

async fn wait_status(env: &TestEnv, id: &str, status: &str) -> Value {
    eventually!(60, format!("investigation {status}"), show(env, id).await["status"] == status);
    show(env, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_are_investigated_and_remediated_as_the_automation_level_says() {
    let lab = tempfile::tempdir().expect("tempdir");
    let (temp, other): (PathBuf, PathBuf) = (lab.path().join("temp"), lab.path().join("other"));
    for d in [&temp, &other, &lab.path().join("core")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut env = lab_env(lab.path(), "").await;
    let (device, dir) = env.enroll("investigated").await;
    let root = lab.path().join("root");
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = root);
    eventually!(10, "online", env.device_status(device).await == "online");
    let groups = env.admin(|c| c.get("/api/v1/device-groups")).await.expect("groups");
    assert!(groups["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|g| g["name"] == "default" && g["automation_level"] == "full"));

    // full × malicious × temp: quarantined automatically.
    let a = temp.join("dropper.com");
    std::fs::write(&a, eicar(0)).expect("drop");
    scan(&env, device, &temp).await;
    let inv = investigation_of(&env, &a).await;
    let id = inv["id"].as_str().expect("id").to_string();
    let done = wait_status(&env, &id, "remediated").await;
    assert!(!a.exists(), "quarantined");
    let actions = done["actions"].as_array().expect("actions");
    let kinds: Vec<&str> = actions.iter().filter_map(|x| x["kind"].as_str()).collect();
    assert_eq!(kinds, ["stop_and_quarantine", "collect_evidence"], "the file first: {done}");
    assert_eq!(actions[0]["source"], "automated_device_action");
    assert_eq!(actions[0]["params"]["expected_sha256"], inv["subject"]["sha256"], "only that content");
    assert_eq!(done["evidence"]["verdict"], "malicious");
    assert_eq!(done["evidence"]["remediation"][0]["decision"], "automatic");
    let alert_id = done["alert_id"].as_str().expect("alert").to_string();
    let a_id = alert_id.clone();
    eventually!(10, "alert resolved", {
        let a_id = a_id.clone();
        env.admin(move |c| c.get(&format!("/api/v1/alerts/{a_id}"))).await.expect("alert")["status"] == "resolved"
    });
    let alert = env.admin(move |c| c.get(&format!("/api/v1/alerts/{alert_id}"))).await.expect("alert");
    assert_eq!(alert["investigations"][0]["id"], done["id"]);

    // A false positive: the quarantine is undone (the file comes back byte
    // for byte), the file is allowed, and dropping it again raises nothing.
    let alert_id = done["alert_id"].as_str().expect("alert").to_string();
    let approver = env.token("appr", "approver").await;
    let path = format!("/api/v1/alerts/{alert_id}/classify");
    let out = env
        .api(&approver, move |c| c.post(&path, &json!({ "classification": "false_positive", "comment": "lab file" })))
        .await
        .expect("classify");
    assert_eq!(out["undone"].as_array().map(Vec::len), Some(1), "{out}");
    let undo = out["undone"][0]["undo"].as_str().expect("undo id").to_string();
    eventually!(30, "released", env.action_status(&undo).await == "succeeded");
    assert_eq!(std::fs::read(&a).expect("restored"), eicar(0), "restored byte for byte");
    let before = env.admin(move |c| c.get(&format!("/api/v1/alerts?device={device}"))).await.expect("alerts")["items"]
        .as_array()
        .map(Vec::len);
    std::fs::remove_file(&a).expect("rm");
    std::fs::write(&a, eicar(0)).expect("drop again");
    scan(&env, device, &temp).await;
    let after = env.admin(move |c| c.get(&format!("/api/v1/alerts?device={device}"))).await.expect("alerts")["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "no new alert for the same file");
    let alert_id = done["alert_id"].as_str().expect("alert").to_string();
    let shown = env.admin(move |c| c.get(&format!("/api/v1/alerts/{alert_id}"))).await.expect("alert");
    assert_eq!(
        (shown["classification"].as_str(), shown["status"].as_str()),
        (Some("false_positive"), Some("resolved"))
    );
    std::fs::remove_file(&a).expect("rm");

    // semi_any: pending approval, then terminated by a person.
    let body = json!({ "name": "careful", "automation_level": "semi_any" });
    env.admin(move |c| c.post("/api/v1/device-groups", &body)).await.expect("group");
    env.admin(move |c| c.patch(&format!("/api/v1/devices/{device}"), &json!({ "group": "careful" })))
        .await
        .expect("move");
    let b = other.join("tool.com");
    std::fs::write(&b, eicar(1)).expect("drop");
    scan(&env, device, &other).await;
    let inv = investigation_of(&env, &b).await;
    let id = inv["id"].as_str().expect("id").to_string();
    let pending = wait_status(&env, &id, "pending_approval").await;
    assert_eq!(pending["evidence"]["remediation"][0]["decision"], "pending", "{pending}");
    assert_eq!(pending["evidence"]["remediation"][0]["folder_class"], "other");
    let path = format!("/api/v1/investigations/{id}/terminate");
    let ended = env.admin(move |c| c.post(&path, &json!({ "comment": "lab file" }))).await.expect("terminate");
    assert_eq!(ended["status"], "terminated_by_user");
    let q = ended["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|x| x["kind"] == "stop_and_quarantine")
        .cloned()
        .expect("q");
    assert_eq!(q["status"], "rejected");
    assert!(b.exists(), "nothing was done");

    // none: verdicts, no remediation action.
    let body = json!({ "automation_level": "none" });
    env.admin(move |c| c.patch("/api/v1/device-groups/careful", &body)).await.expect("set none");
    let c = temp.join("again.com");
    std::fs::write(&c, eicar(2)).expect("drop");
    scan(&env, device, &temp).await;
    let inv = investigation_of(&env, &c).await;
    let id = inv["id"].as_str().expect("id").to_string();
    let waiting = wait_status(&env, &id, "pending_approval").await;
    assert_eq!(waiting["evidence"]["remediation"][0]["decision"], "noresponse", "{waiting}");
    let kinds: Vec<&str> =
        waiting["actions"].as_array().expect("actions").iter().filter_map(|x| x["kind"].as_str()).collect();
    assert_eq!(kinds, ["collect_evidence"], "no automated response");
    assert!(c.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_threat_expands_to_the_fleet_only_with_an_approver_and_only_onto_the_same_hash() {
    let lab = tempfile::tempdir().expect("tempdir");
    let (da, db) = (lab.path().join("temp/a"), lab.path().join("temp/b"));
    for d in [&da, &db] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut env = lab_env(lab.path(), "nowhere").await;
    let (a, dir_a) = env.enroll("origin").await;
    let (b, dir_b) = env.enroll("neighbour").await;
    let (sa, sb) = (da.clone(), db.clone());
    let _agent_a = env.start_agent_with(a, &dir_a, move |c| c.evidence_search_paths = vec![sa]);
    let _agent_b = env.start_agent_with(b, &dir_b, move |c| c.evidence_search_paths = vec![sb]);
    eventually!(10, "online", env.device_status(a).await == "online" && env.device_status(b).await == "online");

    // The same file on both; only the origin detects it. The neighbour has
    // a file of its own at the origin's path (the device shares the
    // directory here): another hash, which must never be touched.
    let x = da.join("x.com");
    let y = db.join("y.com");
    std::fs::write(&x, eicar(5)).expect("drop");
    std::fs::write(&y, eicar(5)).expect("copy");
    scan(&env, a, &da).await;
    let origin = investigation_of(&env, &x).await;
    let origin_id = origin["id"].as_str().expect("id").to_string();
    // Quarantined on the origin at once; the rest of the fleet waits for a person.
    eventually!(30, "origin's file quarantined", !x.exists());
    let waiting = wait_status(&env, &origin_id, "pending_approval").await;
    assert_eq!(waiting["evidence"]["expansion"]["status"], "pending_approval", "{waiting}");
    assert_eq!(waiting["evidence"]["expansion"]["devices"], json!([b]));
    std::fs::write(&x, b"the neighbour's own x.com, not malware").expect("neighbour's file at the same path");
    let list = env.admin(move |c| c.get(&format!("/api/v1/investigations?device={b}"))).await.expect("list");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing on the neighbour without approval");

    let responder = env.token("resp", "responder").await;
    let path = format!("/api/v1/investigations/{origin_id}/approve-expansion");
    let p = path.clone();
    let refused = env.api(&responder, move |c| c.post(&p, &json!({}))).await;
    assert!(matches!(refused, Err(picket_coordinator::client::ClientError::Api { status: 403, .. })), "{refused:?}");
    let approver = env.token("appr", "approver").await;
    let approved = env.api(&approver, move |c| c.post(&path, &json!({}))).await.expect("approve");
    assert_eq!(approved["evidence"]["expansion"]["status"], "approved");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let child = loop {
        let list = env.admin(move |c| c.get(&format!("/api/v1/investigations?device={b}"))).await.expect("list");
        let found = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["subject"]["expanded_from"] == origin_id.as_str())
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no expansion on the second device");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let child_id = child["id"].as_str().expect("id").to_string();
    let done = wait_status(&env, &child_id, "remediated").await;
    let quarantined: Vec<&str> = done["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["kind"] == "stop_and_quarantine")
        .filter_map(|a| a["params"]["path"].as_str())
        .collect();
    assert_eq!(quarantined, [y.to_str().expect("utf-8")], "only the copy with the hash: {done}");
    assert!(!y.exists());
    assert_eq!(std::fs::read(&x).expect("kept"), b"the neighbour's own x.com, not malware");
    assert!(done["evidence"]["expansion"].is_null(), "expansions do not expand");
    wait_status(&env, &origin_id, "remediated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_malware_at_another_path_is_remediated_or_pending_too() {
    let lab = tempfile::tempdir().expect("tempdir");
    let temp = lab.path().join("temp");
    std::fs::create_dir_all(&temp).expect("mkdir");
    let mut env = lab_env(lab.path(), "nowhere").await;
    let (device, dir) = env.enroll("twice").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");

    for (level, first, second, want) in
        [("full", "a.com", "b.com", "remediated"), ("semi_any", "c.com", "d.com", "pending_approval")]
    {
        let body = json!({ "automation_level": level });
        env.admin(move |c| c.patch("/api/v1/device-groups/default", &body)).await.expect("level");
        let pad = if level == "full" { 7 } else { 8 };
        let one = temp.join(first);
        std::fs::write(&one, eicar(pad)).expect("drop");
        scan(&env, device, &one).await;
        let inv1 = investigation_of(&env, &one).await;
        wait_status(&env, inv1["id"].as_str().expect("id"), want).await;
        // The same bytes, elsewhere, seconds later: the same alert (device,
        // hash, rule) — and an investigation of its own.
        let two = temp.join(second);
        std::fs::write(&two, eicar(pad)).expect("drop again");
        scan(&env, device, &two).await;
        let inv2 = investigation_of(&env, &two).await;
        let shown = wait_status(&env, inv2["id"].as_str().expect("id"), want).await;
        assert_eq!(inv1["alert_id"], inv2["alert_id"], "grouped in one alert");
        let q =
            shown["actions"].as_array().expect("actions").iter().find(|a| a["kind"] == "stop_and_quarantine").cloned();
        let q = q.expect("a quarantine of the second path");
        assert_eq!(q["params"]["path"], two.to_str().expect("utf-8"));
        let alert_id = inv2["alert_id"].as_str().expect("alert").to_string();
        let want_alert = if level == "full" { "resolved" } else { "in_progress" };
        let a_id = alert_id.clone();
        eventually!(10, format!("alert {want_alert}"), {
            let a_id = a_id.clone();
            env.admin(move |c| c.get(&format!("/api/v1/alerts/{a_id}"))).await.expect("alert")["status"] == want_alert
        });
        let alert = env.admin(move |c| c.get(&format!("/api/v1/alerts/{alert_id}"))).await.expect("alert");
        let paths: Vec<&str> =
            alert["paths"].as_array().expect("paths").iter().filter_map(|p| p["path"].as_str()).collect();
        assert_eq!(paths, [one.to_str().expect("utf-8"), two.to_str().expect("utf-8")], "{alert}");
        if level == "full" {
            assert!(!one.exists() && !two.exists(), "both quarantined");
            assert_eq!(alert["status"], "resolved", "alert and investigations agree: {alert}");
        } else {
            assert_eq!(q["status"], "pending_approval");
            assert!(one.exists() && two.exists(), "both wait for a person");
            assert_eq!(alert["status"], "in_progress", "{alert}");
        }
    }
}

/// Every automation level × verdict × folder class, end to end: each file
/// is detected by a real scan, investigated on the real agent, and its
/// remediation is automatic, pending or absent exactly as DESIGN.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_design_table_end_to_end() {
    let lab = tempfile::tempdir().expect("tempdir");
    let mut env = lab_env(lab.path(), "nowhere").await;
    let (device, dir) = env.enroll("table").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let rules = json!({ "files": [{ "name": "table.yar", "source": r#"
rule Table_Malicious { meta: severity = "malicious" strings: $a = "picket-table-malicious" condition: $a }
rule Table_Suspicious { meta: severity = "suspicious" strings: $a = "picket-table-suspicious" condition: $a }
"# }] });
    let bundle = env.admin(move |c| c.post("/api/v1/rules", &rules)).await.expect("rules");
    let version = bundle["version"].as_str().expect("version").to_string();
    eventually!(30, "agent has the rules", env.device(device).await["content"]["rules_version"] == version.as_str());
    let body = json!({ "name": "table", "automation_level": "full" });
    env.admin(move |c| c.post("/api/v1/device-groups", &body)).await.expect("group");
    env.admin(move |c| c.patch(&format!("/api/v1/devices/{device}"), &json!({ "group": "table" })))
        .await
        .expect("move");

    let expected = |level: &str, verdict: &str, class: &str| -> &'static str {
        match (level, verdict, class) {
            ("none", _, _) => "none",
            (_, "suspicious", _) => "pending",
            ("full", _, _) => "automatic",
            ("semi_any", _, _) => "pending",
            ("semi_core", _, "core") => "pending",
            ("semi_core", _, _) => "automatic",
            ("semi_non_temp", _, "temp") => "automatic",
            _ => "pending",
        }
    };
    for level in ["full", "semi_any", "semi_core", "semi_non_temp", "none"] {
        let body = json!({ "automation_level": level });
        env.admin(move |c| c.patch("/api/v1/device-groups/table", &body)).await.expect("level");
        let mut files = Vec::new();
        for class in ["core", "temp", "other"] {
            let d = lab.path().join(class).join(level);
            std::fs::create_dir_all(&d).expect("mkdir");
            for verdict in ["malicious", "suspicious"] {
                let f = d.join(format!("{verdict}.bin"));
                std::fs::write(&f, format!("x picket-table-{verdict} {level} {class}")).expect("write");
                files.push((class, verdict, f));
            }
        }
        for class in ["core", "temp", "other"] {
            scan(&env, device, &lab.path().join(class).join(level)).await;
        }
        for (class, verdict, f) in &files {
            let inv = investigation_of(&env, f).await;
            let id = inv["id"].as_str().expect("id").to_string();
            eventually!(
                30,
                format!("{level} × {verdict} × {class} evaluated"),
                show(&env, &id).await["evidence"]["verdict"] == *verdict
            );
            let shown = show(&env, &id).await;
            let quarantine: Vec<&Value> = shown["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .filter(|a| a["kind"] == "stop_and_quarantine")
                .collect();
            let outcome = match quarantine.first() {
                None => "none",
                Some(a) if a["decided_by"].is_null() && a["status"] == "pending_approval" => "pending",
                Some(_) => "automatic",
            };
            assert_eq!(outcome, expected(level, verdict, class), "{level} × {verdict} × {class}: {shown}");
            assert_eq!(shown["evidence"]["remediation"][0]["folder_class"], *class);
        }
    }
}

/// Heuristics: a non-package program from a temp folder holding a socket,
/// and persistence pointing into a temp folder, are suspicious: kill_process
/// and remove_persistence wait for approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heuristics_flag_temp_programs_with_sockets_and_persistence_into_temp() {
    let lab = tempfile::tempdir().expect("tempdir");
    let temp = lab.path().join("temp");
    let root = lab.path().join("root");
    std::fs::create_dir_all(&temp).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let mut env = lab_env(lab.path(), "nowhere").await;
    let (device, dir) = env.enroll("heuristics").await;
    let r = root.clone();
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = r);
    eventually!(10, "online", env.device_status(device).await == "online");

    // A copy of perl (not owned by a package where it is) listening on loopback.
    let program = temp.join("listener");
    std::fs::copy("/usr/bin/perl", &program).expect("copy perl");
    let mut child = std::process::Command::new(&program)
        .args(["-e", "use IO::Socket::INET; my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die; sleep 600"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("run the copy");
    let helper = temp.join("helper.sh");
    std::fs::write(root.join("etc/crontab"), format!("*/5 * * * * root {}\n", helper.display())).expect("crontab");
    std::fs::write(&helper, "#!/bin/sh\n").expect("helper");
    let benign = lab.path().join("other/readme.txt");
    std::fs::create_dir_all(benign.parent().expect("dir")).expect("mkdir");
    std::fs::write(&benign, "nothing to see").expect("benign");
    eventually!(
        10,
        "listening",
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .map(|d| d
                .flatten()
                .any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))))
            .unwrap_or(false)
    );

    let body = json!({ "path": benign });
    let inv =
        env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/investigations"), &body)).await.expect("start");
    let id = inv["id"].as_str().expect("id").to_string();
    let pending = wait_status(&env, &id, "pending_approval").await;
    let kinds: Vec<&str> =
        pending["actions"].as_array().expect("actions").iter().filter_map(|a| a["kind"].as_str()).collect();
    assert!(kinds.contains(&"kill_process") && kinds.contains(&"remove_persistence"), "{pending}");
    for a in pending["actions"].as_array().expect("actions").iter().filter(|a| a["kind"] != "collect_evidence") {
        assert_eq!(a["status"], "pending_approval", "suspicious waits for approval: {a}");
    }
    let items = pending["evidence"]["items"].as_array().expect("items");
    assert!(
        items.iter().any(|i| i["type"] == "process" && i["verdict"] == "suspicious" && i["pid"] == child.id()),
        "{pending}"
    );
    assert!(
        items.iter().any(|i| i["type"] == "persistence" && i["path"] == helper.to_str().expect("utf-8")),
        "{pending}"
    );
    assert_eq!(items[0]["verdict"], "no_threats_found", "the benign file itself is clean");
    let _ = child.kill();
    let _ = child.wait();
}
