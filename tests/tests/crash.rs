//! Crashes: `kill -9` of the agent in the middle of an action, and of the
//! coordinator right after an approval. The process to kill is this test
//! binary re-executed as a helper (see `helper_*`), so the kill is a real
//! SIGKILL of a real process holding real sockets and files.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use picket_e2e::{eventually, Db, Target, TestEnv};
use serde_json::json;

/// Helper entry point: run an agent on `PICKET_HELPER_AGENT_STATE` until killed.
#[test]
#[ignore = "a helper process entry point, started by the crash tests"]
fn helper_agent_process() {
    let dir = std::env::var("PICKET_HELPER_AGENT_STATE").expect("PICKET_HELPER_AGENT_STATE");
    picket_e2e::init_logs();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = picket_e2e::agent_config(Path::new(&dir));
    runtime.block_on(picket_agent::session::run(config, tokio_util::sync::CancellationToken::new())).expect("agent");
}

/// Helper entry point: run a coordinator from `PICKET_HELPER_COORDINATOR_CONFIG` until killed.
#[test]
#[ignore = "a helper process entry point, started by the crash tests"]
fn helper_coordinator_process() {
    let path = std::env::var("PICKET_HELPER_COORDINATOR_CONFIG").expect("PICKET_HELPER_COORDINATOR_CONFIG");
    picket_e2e::init_logs();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let config = picket_coordinator::Config::from_file(Path::new(&path)).expect("config");
        let _c = picket_coordinator::Coordinator::start(config, tokio_util::sync::CancellationToken::new())
            .await
            .expect("start");
        std::future::pending::<()>().await;
    });
}

fn helper(name: &str, var: &str, value: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--ignored", "--nocapture"])
        .env(var, value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper")
}

fn kill9(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_killed_mid_action_reports_interrupted_and_never_reruns_it() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("victim").await;
    let mut agent = helper("helper_agent_process", "PICKET_HELPER_AGENT_STATE", &dir);
    eventually!(20, "helper agent online", env.device_status(device).await == "online");

    // SIGTERM is ignored, so the action sits in its 60 s grace period.
    let mut target = Target::term_ignoring();
    let body = json!({ "kind": "kill_process", "params": { "pid": target.pid(), "grace_secs": 60 }, "comment": "c" });
    let path = format!("/api/v1/devices/{device}/actions");
    let action = env.admin(move |c| c.post(&path, &body)).await.expect("create");
    let id = action["id"].as_str().expect("id").to_string();
    eventually!(10, "action running", env.action_status(&id).await == "running");

    kill9(&mut agent);
    let mut agent = helper("helper_agent_process", "PICKET_HELPER_AGENT_STATE", &dir);
    eventually!(20, "interrupted action reported after restart", env.action_status(&id).await == "failed");
    let action = env.action(&id).await;
    assert_eq!(action["result"]["reason"], "interrupted", "{action}");
    assert!(!target.exited(), "not run a second time: no SIGKILL after the restart");
    let runs = action["timeline"].as_array().expect("timeline").iter().filter(|t| t["to"] == "running").count();
    assert_eq!(runs, 1, "{action}");
    kill9(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_killed_after_an_approval_loses_nothing_and_runs_it_once() {
    picket_e2e::init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent_port, api_port) = (free_port(), free_port());
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\nagent_listen = \"127.0.0.1:{agent_port}\"\napi_listen = \"127.0.0.1:{api_port}\"\n\
             heartbeat_secs = 5\n[actions]\napproval_required_kinds = [\"kill_process\"]\ntwo_person_rule = false\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .expect("config");
    let mut coordinator = helper("helper_coordinator_process", "PICKET_HELPER_COORDINATOR_CONFIG", &config_path);
    let token_path = dir.path().join("data/admin.token");
    eventually!(20, "coordinator up", std::fs::read_to_string(&token_path).is_ok_and(|t| !t.trim().is_empty()));
    let token = std::fs::read_to_string(&token_path).expect("token").trim().to_string();
    let api = format!("https://127.0.0.1:{api_port}");
    let ca = std::fs::read(dir.path().join("data/pki/ca.pem")).expect("the coordinator's CA");
    let call = |path: String, body: Option<serde_json::Value>| {
        let (api, token, ca) = (api.clone(), token.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            let c = picket_coordinator::client::Client::with_ca(&api, &token, &ca).expect("client");
            match body {
                Some(b) => c.post(&path, &b),
                None => c.get(&path),
            }
        })
    };
    let mut up = false;
    for _ in 0..100 {
        if call("/api/v1/devices".into(), None).await.expect("task").is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "API up");

    let t = call("/api/v1/enrollment-tokens".into(), Some(json!({}))).await.expect("task").expect("token");
    let state = dir.path().join("agent");
    let enrolled = picket_agent::enroll::enroll(picket_agent::enroll::EnrollOptions {
        coordinator: format!("127.0.0.1:{agent_port}"),
        token: t["token"].as_str().expect("token").into(),
        ca_fingerprint: t["ca_fingerprint"].as_str().expect("fp").into(),
        state: picket_agent::state::StateDir::new(&state),
        force: false,
    })
    .await
    .expect("enroll");
    let stop = tokio_util::sync::CancellationToken::new();
    let config = picket_e2e::agent_config(&state);
    let agent = tokio::spawn(picket_agent::session::run(config, stop.clone()));
    let device = enrolled.device_id;
    eventually!(
        20,
        "agent online",
        call(format!("/api/v1/devices/{device}"), None).await.expect("task").is_ok_and(|d| d["status"] == "online")
    );

    let mut target = Target::sleeper();
    let body = json!({ "kind": "kill_process", "params": { "pid": target.pid() }, "comment": "c" });
    let action = call(format!("/api/v1/devices/{device}/actions"), Some(body)).await.expect("task").expect("create");
    assert_eq!(action["status"], "pending_approval");
    let id = action["id"].as_str().expect("id").to_string();
    call(format!("/api/v1/actions/{id}/approve"), Some(json!({"comment": "go"})))
        .await
        .expect("task")
        .expect("approve");
    kill9(&mut coordinator); // dispatch may or may not have happened

    let mut coordinator = helper("helper_coordinator_process", "PICKET_HELPER_COORDINATOR_CONFIG", &config_path);
    eventually!(
        30,
        "approved action done after the restart",
        call(format!("/api/v1/actions/{id}"), None).await.expect("task").is_ok_and(|a| a["status"] == "succeeded")
    );
    eventually!(5, "target killed", target.exited());
    let action = call(format!("/api/v1/actions/{id}"), None).await.expect("task").expect("action");
    let runs = action["timeline"].as_array().expect("timeline").iter().filter(|t| t["to"] == "running").count();
    assert!(runs <= 1, "started at most once: {action}");
    let journal = std::fs::read_dir(state.join("journal")).expect("journal").count();
    assert_eq!(journal, 1, "one journal entry: the agent ran it once");
    stop.cancel();
    let _ = agent.await;
    kill9(&mut coordinator);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
