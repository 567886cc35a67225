//! The action pipeline end to end: a real coordinator, real agents, a real
//! `kill_process` on a real process.

use picket_coordinator::client::ClientError;
use picket_e2e::{databases, eventually, Db, Target, TestEnv};
use serde_json::{json, Value};

fn err_status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, message, .. }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn request(env: &TestEnv, token: &str, device: uuid::Uuid, body: Value) -> Result<Value, ClientError> {
    let path = format!("/api/v1/devices/{device}/actions");
    env.api(token, move |c| c.post(&path, &body)).await
}

async fn decide(env: &TestEnv, token: &str, id: &str, verb: &str, comment: &str) -> Result<Value, ClientError> {
    let path = format!("/api/v1/actions/{id}/{verb}");
    let body = json!({ "comment": comment });
    env.api(token, move |c| c.post(&path, &body)).await
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_process_runs_end_to_end_with_every_transition_logged() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let (device, dir) = env.enroll("a").await;
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");
        let responder = env.token("resp", "responder").await;
        let mut target = Target::sleeper();

        let created = request(
            &env,
            &responder,
            device,
            json!({
                "kind": "kill_process", "params": { "pid": target.pid() }, "comment": "stray miner"
            }),
        )
        .await
        .expect("create");
        assert_eq!(created["kind"], "kill_process");
        assert_eq!(created["source"], "live_response", "a person's kill_process is live response");
        assert_eq!(created["requestor"], "resp");
        assert_eq!(created["device_id"], device.to_string());
        let id = id_of(&created);
        eventually!(10, format!("{db:?}: action succeeded"), env.action_status(&id).await == "succeeded");
        eventually!(5, "target killed", target.exited());

        let action = env.action(&id).await;
        let path: Vec<&str> =
            action["timeline"].as_array().expect("timeline").iter().map(|t| t["to"].as_str().unwrap_or("")).collect();
        assert_eq!(path, ["queued", "sent", "running", "succeeded"], "{action}");
        assert_eq!(action["result"]["output"]["signals"], json!(["SIGKILL"]));
        assert_eq!(action["result"]["output"]["exited"], true);

        let metrics = env.api("", |c| c.get("/health")).await.expect("health");
        assert_eq!(metrics["status"], "ok");
        let audit = env.admin(|c| c.get("/api/v1/audit")).await.expect("audit");
        assert!(audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["actor"] == "resp" && e["target"].as_str().is_some_and(|t| t.ends_with("/actions"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_device_gets_its_actions_on_reconnect_with_dedupe_and_cancel() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("later").await;
    let responder = env.token("resp", "responder").await;
    let mut keep = Target::sleeper();
    let mut kill = Target::sleeper();

    let body = json!({ "kind": "kill_process", "params": { "pid": kill.pid() }, "comment": "c" });
    let first = request(&env, &responder, device, body.clone()).await.expect("create");
    assert_eq!(first["status"], "queued");
    let again = request(&env, &responder, device, body).await.expect("repeat");
    assert_eq!(id_of(&again), id_of(&first), "the same live action, not a second one");

    let other = request(
        &env,
        &responder,
        device,
        json!({ "kind": "kill_process", "params": { "pid": keep.pid() }, "comment": "c" }),
    )
    .await
    .expect("create other");
    let cancelled = decide(&env, &responder, &id_of(&other), "cancel", "wrong pid").await.expect("cancel");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["decided_by"], "resp");
    let (status, _) = err_status(decide(&env, &responder, &id_of(&other), "cancel", "again").await);
    assert_eq!(status, 409);

    let _agent = env.start_agent(device, &dir);
    eventually!(15, "queued action ran on reconnect", env.action_status(&id_of(&first)).await == "succeeded");
    eventually!(5, "its target died", kill.exited());
    assert!(!keep.exited(), "the cancelled action never ran");
    assert_eq!(env.action_status(&id_of(&other)).await, "cancelled");

    let listed =
        env.admin(move |c| c.get(&format!("/api/v1/actions?device={device}&status=cancelled"))).await.expect("list");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let csv = reqwest_csv(&env).await;
    assert!(csv.starts_with("id,kind,device_id,"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

async fn reqwest_csv(env: &TestEnv) -> String {
    env.admin(|c| c.get_text("/api/v1/actions.csv")).await.expect("csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_follow_roles_and_the_two_person_rule() {
    let mut env =
        TestEnv::start_with(&Db::Sqlite, |c| c.actions.approval_required_kinds = vec!["kill_process".into()]).await;
    let (device, dir) = env.enroll("a").await;
    let _agent = env.start_agent(device, &dir);
    let viewer = env.token("vic", "viewer").await;
    let alice = env.token("alice", "responder").await;
    let bob = env.token("bob", "approver").await;
    let carol = env.token("carol", "approver").await;
    let mut t1 = Target::sleeper();
    let mut t2 = Target::sleeper();
    let kill = |pid: u32| json!({ "kind": "kill_process", "params": { "pid": pid }, "comment": "suspicious" });

    let (status, _) = err_status(request(&env, &viewer, device, kill(t1.pid())).await);
    assert_eq!(status, 403, "a viewer cannot create actions");
    let (status, message) = err_status(
        request(&env, &alice, device, json!({ "kind": "kill_process", "params": { "pid": t1.pid() } })).await,
    );
    assert_eq!(status, 400, "a manual action needs a comment");
    assert!(message.contains("comment"), "{message}");

    let a1 = request(&env, &alice, device, kill(t1.pid())).await.expect("alice asks");
    assert_eq!(a1["status"], "pending_approval");
    let (status, _) = err_status(decide(&env, &alice, &id_of(&a1), "approve", "me").await);
    assert_eq!(status, 403, "a responder cannot approve");

    let b1 = request(&env, &bob, device, kill(t2.pid())).await.expect("bob asks");
    let (status, message) = err_status(decide(&env, &bob, &id_of(&b1), "approve", "self").await);
    assert_eq!(status, 403);
    assert!(message.contains("two-person"), "{message}");

    let approved = decide(&env, &carol, &id_of(&b1), "approve", "confirmed on the host").await.expect("carol approves");
    assert_eq!(approved["decided_by"], "carol");
    assert_eq!(approved["decision_comment"], "confirmed on the host");
    eventually!(10, "approved action ran", env.action_status(&id_of(&b1)).await == "succeeded");
    let timeline = env.action(&id_of(&b1)).await["timeline"].clone();
    let steps: Vec<(&str, &str)> = timeline
        .as_array()
        .expect("timeline")
        .iter()
        .map(|t| (t["to"].as_str().unwrap_or(""), t["actor"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        steps,
        [
            ("pending_approval", "bob"),
            ("approved", "carol"),
            ("queued", "coordinator"),
            ("sent", "coordinator"),
            ("running", "agent"),
            ("succeeded", "agent")
        ],
        "{timeline}"
    );
    eventually!(5, "t2 killed", t2.exited());

    let rejected = decide(&env, &carol, &id_of(&a1), "reject", "false alarm").await.expect("reject");
    assert_eq!(rejected["status"], "rejected");
    let (status, _) = err_status(decide(&env, &carol, &id_of(&a1), "approve", "late").await);
    assert_eq!(status, 409);
    assert!(!t1.exited(), "a rejected action never runs");

    // Bulk approval: one good id, one unknown, one already decided.
    let a2 = request(&env, &alice, device, kill(t1.pid())).await.expect("ask again");
    let body = json!({ "ids": [id_of(&a2), uuid::Uuid::new_v4().to_string(), id_of(&a1)], "comment": "batch" });
    let bulk = env.api(&carol, move |c| c.post("/api/v1/actions/approve", &body)).await.expect("bulk");
    let oks: Vec<bool> =
        bulk["items"].as_array().expect("items").iter().map(|i| i["ok"].as_bool().unwrap_or(false)).collect();
    assert_eq!(oks, [true, false, false], "{bulk}");
    eventually!(10, "bulk-approved action ran", env.action_status(&id_of(&a2)).await == "succeeded");

    let pending = env.admin(|c| c.get("/api/v1/actions?status=pending_approval")).await.expect("pending tab");
    assert_eq!(pending["items"].as_array().map(Vec::len), Some(0));
    let audit = env.admin(|c| c.get("/api/v1/audit?limit=100")).await.expect("audit");
    let decisions = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["target"].as_str().is_some_and(|t| t.ends_with("/approve") || t.ends_with("/reject")))
        .count();
    assert_eq!(decisions, 6, "every decision, refused or not, is audited: {audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_approvals_expire_and_queued_actions_of_offline_devices_time_out() {
    let env = TestEnv::start_with(&Db::Sqlite, |c| {
        c.actions.approval_required_kinds = vec!["isolate".into()];
        c.actions.pending_expiry_secs = 1;
        c.actions.queued_expiry_secs = 1;
        c.actions.expiry_check_secs = 1;
    })
    .await;
    let (device, _dir) = env.enroll("offline").await;
    let responder = env.token("resp", "responder").await;
    let pending =
        request(&env, &responder, device, json!({ "kind": "isolate", "params": { "mode": "full" }, "comment": "c" }))
            .await
            .expect("pending");
    assert_eq!(pending["status"], "pending_approval");
    let queued = request(
        &env,
        &responder,
        device,
        json!({ "kind": "kill_process", "params": { "pid": 999999 }, "comment": "c" }),
    )
    .await
    .expect("queued");
    assert_eq!(queued["status"], "queued");
    eventually!(10, "pending expired", env.action_status(&id_of(&pending)).await == "expired");
    eventually!(10, "queued timed out", env.action_status(&id_of(&queued)).await == "timed_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undo_links_both_ways_and_says_why_when_it_cannot() {
    use picket_common::actions::{ActionOutcome, ActionResult};
    use picket_common::io::{read_frame, write_frame};
    use picket_common::proto::{AgentMsg, CoordMsg};
    use picket_e2e::raw;

    let mut env = TestEnv::start(&Db::Sqlite).await;
    let responder = env.token("resp", "responder").await;

    // kill_process has no inverse.
    let (device, dir) = env.enroll("a").await;
    let _agent = env.start_agent(device, &dir);
    let target = Target::sleeper();
    let k = request(
        &env,
        &responder,
        device,
        json!({ "kind": "kill_process", "params": { "pid": target.pid() }, "comment": "c" }),
    )
    .await
    .expect("kill");
    eventually!(10, "kill done", env.action_status(&id_of(&k)).await == "succeeded");
    let (status, message) = err_status(decide(&env, &responder, &id_of(&k), "undo", "oops").await);
    assert_eq!((status, message.contains("cannot be undone")), (409, true), "{message}");

    // An isolate acted on by a device speaking the real protocol from a hand-made client.
    let (device, dir) = env.enroll("b").await;
    let isolate = request(
        &env,
        &responder,
        device,
        json!({ "kind": "isolate", "params": { "mode": "full" }, "comment": "contain" }),
    )
    .await
    .expect("isolate");
    let id: uuid::Uuid = id_of(&isolate).parse().expect("uuid");
    let (status, _) = err_status(decide(&env, &responder, &id.to_string(), "undo", "early").await);
    assert_eq!(status, 409, "only a succeeded action can be undone");

    let mut tls = raw::connect(env.agent_addr(), raw::agent_config(&dir)).await.expect("connect");
    write_frame(&mut tls, &raw::hello(), 1 << 20).await.expect("hello");
    let mut got_action = false;
    while let Ok(Some(msg)) = read_frame::<_, CoordMsg>(&mut tls, 1 << 20).await {
        if let CoordMsg::Action(req) = &msg {
            assert_eq!(req.action_id, id);
            got_action = true;
            write_frame(&mut tls, &AgentMsg::ActionStarted { action_id: id }, 1 << 20).await.expect("started");
            let done = ActionOutcome::Succeeded { output_json: json!({ "rules": 4 }).to_string() };
            write_frame(&mut tls, &AgentMsg::ActionResult(ActionResult { action_id: id, outcome: done }), 1 << 20)
                .await
                .expect("result");
        }
        if let CoordMsg::ResultAck { action_id } = msg {
            assert_eq!(action_id, id);
            break;
        }
    }
    assert!(got_action);
    assert_eq!(env.action_status(&id.to_string()).await, "succeeded");

    let undo = decide(&env, &responder, &id.to_string(), "undo", "contained, releasing").await.expect("undo");
    assert_eq!(undo["kind"], "release_isolation");
    assert_eq!(undo["undoes"], id.to_string());
    assert_eq!(env.action(&id.to_string()).await["undone_by"], undo["id"]);
    let (status, message) = err_status(decide(&env, &responder, &id.to_string(), "undo", "twice").await);
    assert_eq!((status, message.contains("already undone")), (409, true), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_action_reports_detections_with_its_summary() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("scanned").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let target = tempfile::tempdir().expect("tempdir");
    let eicar = picket_e2e::eicar();
    std::fs::create_dir_all(target.path().join("sub")).expect("dir");
    std::fs::write(target.path().join("sub/test.com"), eicar).expect("write");
    std::fs::write(target.path().join("readme.txt"), b"nothing here").expect("write");

    let responder = env.token("resp", "responder").await;
    let body = json!({ "kind": "scan", "params": { "paths": [target.path()] }, "comment": "triage" });
    let a = request(&env, &responder, device, body).await.expect("scan");
    let id = id_of(&a);
    eventually!(30, "scan finished", env.action_status(&id).await == "succeeded");
    let action = env.action(&id).await;
    assert_eq!(action["progress"]["percent"], 100, "{action}");
    let out = action["result"]["output"].clone();
    assert_eq!(out["files"], 2, "{out}");
    assert_eq!(out["errors"], 0, "{out}");
    let d = &out["detections"][0];
    assert_eq!(d["rule"], "EICAR_Test_File");
    assert_eq!(d["severity"], "malicious");
    assert_eq!(d["sha256"], "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
    assert!(d["path"].as_str().is_some_and(|p| p.ends_with("sub/test.com")));

    // Parameters the agent would refuse are refused when requested.
    let bad = request(
        &env,
        &responder,
        device,
        json!({ "kind": "scan", "params": { "paths": ["relative/path"] }, "comment": "c" }),
    )
    .await;
    match bad {
        Err(picket_coordinator::client::ClientError::Api { status: 400, message, .. }) => {
            assert!(message.contains("absolute"), "{message}")
        }
        other => panic!("expected 400: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_process_by_sha256_stops_every_copy_running() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("hash").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("miner");
    // A copy of sleep with a unique trailer: its hash matches only these two
    // processes, never another sleep on the machine.
    let mut bytes = std::fs::read("/bin/sleep").expect("read sleep");
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    std::fs::write(&copy, &bytes).expect("write copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut a = Target(std::process::Command::new(&copy).arg("300").spawn().expect("spawn"));
    let mut b = Target(std::process::Command::new(&copy).arg("301").spawn().expect("spawn"));
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&copy).expect("read")))
    };
    let responder = env.token("resp", "responder").await;
    let act = request(
        &env,
        &responder,
        device,
        json!({ "kind": "kill_process", "params": { "sha256": sha }, "comment": "all copies" }),
    )
    .await
    .expect("create");
    eventually!(10, "killed", env.action_status(&id_of(&act)).await == "succeeded");
    eventually!(5, "both copies gone", a.exited() && b.exited());
    let out = env.action(&id_of(&act)).await["result"]["output"].clone();
    assert_eq!(out["killed"].as_array().map(Vec::len), Some(2), "{out}");
}
