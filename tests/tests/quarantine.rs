//! stop_and_quarantine, its undo, delete_file and remove_persistence through
//! the action pipeline, on a running copy of `sleep` with persistence in a
//! test root (the agent's `persistence_root`), never the host's /etc.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

async fn act(env: &TestEnv, device: Uuid, kind: &str, params: Value) -> Value {
    let body = json!({ "kind": kind, "params": params, "comment": "e2e" });
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("create");
    let id = a["id"].as_str().expect("id").to_string();
    eventually!(
        30,
        format!("{kind} finished"),
        matches!(env.action_status(&id).await.as_str(), "succeeded" | "failed")
    );
    env.action(&id).await
}

fn sha(path: &Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).expect("read")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quarantine_undo_delete_and_persistence_removal_through_the_pipeline() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("quarantined").await;
    let lab = tempfile::tempdir().expect("tempdir");
    let root = lab.path().join("root");
    std::fs::create_dir_all(root.join("etc/systemd/system")).expect("mkdir");
    let root_for_agent = root.clone();
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = root_for_agent);
    eventually!(10, "online", env.device_status(device).await == "online");

    let bin: PathBuf = lab.path().join("miner");
    let mut bytes = std::fs::read("/bin/sleep").expect("sleep");
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    std::fs::write(&bin, &bytes).expect("copy");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let original = sha(&bin);
    std::fs::write(root.join("etc/crontab"), format!("* * * * * root {}\n", bin.display())).expect("crontab");
    std::fs::write(root.join("etc/systemd/system/miner.service"), format!("[Service]\nExecStart={}\n", bin.display()))
        .expect("unit");
    let mut child = Command::new(&bin).arg("600").stdin(Stdio::null()).spawn().expect("run the copy");
    eventually!(5, "running", std::fs::read_link(format!("/proc/{}/exe", child.id())).is_ok_and(|p| p == bin));

    let a = act(&env, device, "stop_and_quarantine", json!({ "path": bin })).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    let out = &a["result"]["output"];
    assert_eq!(out["killed_pids"], json!([child.id()]));
    assert_eq!(out["sha256"], original.as_str());
    assert_eq!(out["persistence_removed"].as_array().map(Vec::len), Some(2), "{out}");
    assert!(child.wait().is_ok_and(|s| !s.success()));
    assert!(!bin.exists());
    assert!(!root.join("etc/systemd/system/miner.service").exists());

    let id = a["id"].as_str().expect("id").to_string();
    let undo = env
        .admin(move |c| c.post(&format!("/api/v1/actions/{id}/undo"), &json!({ "comment": "false positive" })))
        .await
        .expect("undo");
    assert_eq!(undo["kind"], "release_from_quarantine");
    let undo_id = undo["id"].as_str().expect("id").to_string();
    eventually!(30, "released", env.action_status(&undo_id).await == "succeeded");
    assert_eq!(sha(&bin), original);
    assert!(std::fs::read_to_string(root.join("etc/crontab")).expect("crontab").contains(bin.to_str().expect("utf-8")));
    assert!(root.join("etc/systemd/system/miner.service").exists());

    // remove_persistence alone: the file stays, its cron line goes.
    let a = act(&env, device, "remove_persistence", json!({ "path": bin })).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert!(bin.exists());
    assert_eq!(std::fs::read_to_string(root.join("etc/crontab")).expect("crontab"), "");
    assert!(!root.join("etc/systemd/system/miner.service").exists());

    // delete_file: gone from the path, kept in the vault, releasable by id.
    let a = act(&env, device, "delete_file", json!({ "path": bin })).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert!(!bin.exists());
    let qid = a["result"]["output"]["quarantine_id"].clone();
    let a = act(&env, device, "release_from_quarantine", json!({ "quarantine_id": qid })).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(sha(&bin), original);

    // Refusals come back as invalid_params with the reason.
    let a = act(&env, device, "stop_and_quarantine", json!({ "path": "/proc/self/exe" })).await;
    assert_eq!((a["status"].as_str(), a["result"]["reason"].as_str()), (Some("failed"), Some("invalid_params")), "{a}");
    let a = act(&env, device, "stop_and_quarantine", json!({ "path": dir.join("device.key") })).await;
    assert!(a["result"]["error"].as_str().is_some_and(|e| e.contains("agent itself")), "{a}");
}
