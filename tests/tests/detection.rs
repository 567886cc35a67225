//! Detection end to end: rule bundles uploaded to the coordinator (compiled
//! there by the agent binary) reach agents; indicators block and allow;
//! scans and real-time protection raise alerts, deduplicated, visible in the
//! API, and the coordinator's rule checks report bad files one by one.

use std::path::Path;

use picket_coordinator::client::ClientError;
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

const NEEDLE_RULE: &str = r#"
rule Picket_Test_Needle {
  meta:
    severity = "suspicious"
  strings:
    $a = "picket-e2e-needle-4f1c"
  condition:
    $a
}
"#;

async fn scan(env: &TestEnv, device: Uuid, path: &Path) -> Value {
    let body = json!({ "kind": "scan", "params": { "paths": [path] }, "comment": "e2e" });
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("scan action");
    let id = a["id"].as_str().expect("id").to_string();
    eventually!(60, "scan finished", env.action_status(&id).await == "succeeded");
    let mut out = env.action(&id).await["result"]["output"].clone();
    out["action_id"] = json!(id);
    out
}

fn rules_of(out: &Value) -> Vec<String> {
    let mut rules: Vec<String> = out["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| d["rule"].as_str().unwrap_or("").to_string())
        .collect();
    rules.sort();
    rules
}

async fn alerts(env: &TestEnv, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/alerts?{query}");
    env.admin(move |c| c.get(&path)).await.expect("alerts")["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploaded_bundle_reaches_the_agent_and_bad_files_are_reported_one_by_one() {
    for db in picket_e2e::databases().await {
        let mut env = TestEnv::start(&db).await;
        let (device, dir) = env.enroll("rules").await;
        let agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");

        let body = json!({ "files": [
            { "name": "needle.yar", "source": NEEDLE_RULE },
            { "name": "broken.yar", "source": "rule broken { condition: no_such_identifier }" },
            { "name": "unknown_module.yar", "source": "import \"no_such_module\"\nrule m { condition: true }" },
        ]});
        let r = env.admin(move |c| c.post("/api/v1/rules", &body)).await.expect("upload");
        assert_eq!(r["files"], json!(["needle.yar"]), "{r}");
        let failed: Vec<&str> =
            r["errors"].as_array().expect("errors").iter().filter_map(|e| e["file"].as_str()).collect();
        assert_eq!(failed, ["broken.yar", "unknown_module.yar"], "{r}");
        assert!(r["errors"][0]["error"].as_str().is_some_and(|e| e.contains("no_such_identifier")), "{r}");
        let version = r["version"].as_str().expect("version").to_string();
        eventually!(
            30,
            "agent holds the bundle",
            env.device(device).await["content"]["rules_version"] == version.as_str()
        );

        let files = tempfile::tempdir().expect("tempdir");
        std::fs::write(files.path().join("note.txt"), b"...picket-e2e-needle-4f1c...").expect("write");
        let out = scan(&env, device, files.path()).await;
        assert_eq!(rules_of(&out), ["Picket_Test_Needle"], "{out}");
        assert_eq!(out["rules_version"], version.as_str());
        let found = alerts(&env, &format!("device={device}")).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["severity"], "suspicious");
        assert_eq!(found[0]["source"], format!("scan:{}", out["action_id"].as_str().unwrap_or("")));

        // Nothing compiles: refused, nothing stored, the agent keeps its bundle.
        let bad = json!({ "files": [{ "name": "only_bad.yar", "source": "rule x {" }] });
        match env.admin(move |c| c.post("/api/v1/rules", &bad)).await {
            Err(ClientError::Api { status: 422, .. }) => {}
            other => panic!("expected 422, got {other:?}"),
        }
        let bad_name = json!({ "files": [{ "name": "../escape.yar", "source": NEEDLE_RULE }] });
        match env.admin(move |c| c.post("/api/v1/rules", &bad_name)).await {
            Err(ClientError::Api { status: 400, .. }) => {}
            other => panic!("expected 400, got {other:?}"),
        }
        let list = env.admin(|c| c.get("/api/v1/rules")).await.expect("list");
        assert_eq!(list["current"], version.as_str());
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

        // A restarted agent loads the compiled bundle from its cache and still detects.
        assert!(dir.join("content/compiled.bin").is_file());
        agent.stop.cancel();
        let _ = agent.task.await;
        eventually!(10, "offline", env.device_status(device).await == "offline");
        let _agent = env.start_agent(device, &dir);
        eventually!(30, "back online", env.device_status(device).await == "online");
        let again = scan(&env, device, files.path()).await;
        assert_eq!(rules_of(&again), ["Picket_Test_Needle"]);
        let found = alerts(&env, &format!("device={device}")).await;
        assert_eq!((found.len(), found[0]["count"].as_i64()), (1, Some(2)), "deduplicated: {found:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_indicators_detect_and_allow_indicators_override_every_rule() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("indicators").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let files = tempfile::tempdir().expect("tempdir");
    let benign = b"an ordinary file the team decided to block";
    std::fs::write(files.path().join("tool.bin"), benign).expect("write");
    std::fs::write(files.path().join("eicar.com"), picket_e2e::eicar()).expect("write");
    let benign_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(benign));
    let eicar_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(picket_e2e::eicar()));

    let out = scan(&env, device, files.path()).await;
    assert_eq!(rules_of(&out), ["EICAR_Test_File"]);

    let approver = env.token("appr", "approver").await;
    let add = |sha: String, action: &'static str| {
        let body = json!({ "sha256": sha, "action": action, "comment": "e2e" });
        env.api(&approver, move |c| c.post("/api/v1/indicators", &body))
    };
    add(benign_sha.clone(), "block").await.expect("block");
    add(eicar_sha.clone(), "allow").await.expect("allow");
    let version =
        env.admin(|c| c.get("/api/v1/indicators")).await.expect("list")["version"].as_str().unwrap_or("").to_string();
    eventually!(
        30,
        "agent holds the indicators",
        env.device(device).await["content"]["indicators_version"] == version.as_str()
    );
    let out = scan(&env, device, files.path()).await;
    assert_eq!(rules_of(&out), ["indicator"], "block detects, allow silences EICAR: {out}");
    assert_eq!(out["detections"][0]["severity"], "malicious");

    let responder = env.token("resp", "responder").await;
    let refused = env.api(&responder, move |c| c.delete(&format!("/api/v1/indicators/{eicar_sha}"))).await;
    assert!(matches!(refused, Err(ClientError::Api { status: 403, .. })), "{refused:?}");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(picket_e2e::eicar()));
    env.api(&approver, move |c| c.delete(&format!("/api/v1/indicators/{sha}"))).await.expect("delete");
    let bad = json!({ "sha256": "not-a-hash", "action": "block" });
    assert!(matches!(
        env.api(&approver, move |c| c.post("/api/v1/indicators", &bad)).await,
        Err(ClientError::Api { status: 400, .. })
    ));
    let version =
        env.admin(|c| c.get("/api/v1/indicators")).await.expect("list")["version"].as_str().unwrap_or("").to_string();
    eventually!(
        30,
        "agent has the new set",
        env.device(device).await["content"]["indicators_version"] == version.as_str()
    );
    let out = scan(&env, device, files.path()).await;
    assert_eq!(rules_of(&out), ["EICAR_Test_File", "indicator"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_dropped_in_a_watched_directory_raises_an_alert_and_offline_alerts_arrive_later() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("realtime").await;
    let watched = tempfile::tempdir().expect("tempdir");
    let deep = watched.path().join("a/b");
    std::fs::create_dir_all(&deep).expect("mkdir");
    let watch = watched.path().display().to_string();
    let agent = env.start_agent_with(device, &dir, |c| {
        c.realtime.enabled = true;
        c.realtime.paths = vec![watch.clone()];
    });
    eventually!(10, "online", env.device_status(device).await == "online");
    std::fs::write(watched.path().join("harmless.txt"), b"hello").expect("write");
    std::fs::write(deep.join("dropped.com"), picket_e2e::eicar()).expect("drop");
    eventually!(10, "alert raised", !alerts(&env, &format!("device={device}")).await.is_empty());
    let found = alerts(&env, &format!("device={device}")).await;
    assert_eq!(found.len(), 1, "only the EICAR file: {found:?}");
    let alert = &found[0];
    assert_eq!((alert["severity"].as_str(), alert["source"].as_str()), (Some("malicious"), Some("realtime")));
    assert!(alert["detection"]["path"].as_str().is_some_and(|p| p.ends_with("a/b/dropped.com")), "{alert}");

    // Resolve it; the coordinator goes away; a new drop waits on the device
    // and reopens the alert once the coordinator is back.
    let id = alert["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/alerts/{id}");
    env.admin(move |c| c.patch(&path, &json!({ "status": "resolved", "comment": "lab file" }))).await.expect("resolve");
    env.stop_coordinator().await;
    std::fs::write(watched.path().join("again.com"), picket_e2e::eicar()).expect("drop again");
    eventually!(10, "queued on the device", std::fs::read_dir(dir.join("alerts")).map(|d| d.count()).unwrap_or(0) > 0);
    env.restart_coordinator().await;
    let path = format!("/api/v1/alerts/{id}");
    eventually!(
        30,
        "reopened",
        env.admin({
            let p = path.clone();
            move |c| c.get(&p)
        })
        .await
        .expect("alert")["status"]
            == "new"
    );
    let shown = env.admin(move |c| c.get(&path)).await.expect("alert");
    let events: Vec<&str> =
        shown["history"].as_array().expect("history").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["created", "status", "reopened"]);
    eventually!(10, "acknowledged", std::fs::read_dir(dir.join("alerts")).map(|d| d.count()).unwrap_or(1) == 0);
    agent.stop.cancel();
}
