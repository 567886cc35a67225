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
    env.act(device, kind, params, 30).await
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

/// Everything under `root`, as `(relative path, what it is)`: a file's
/// bytes, owner and mode (and times when `times`), a link's target.
fn snapshot(root: &Path, times: bool) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).expect("readlink").display())
            } else if m.is_dir() {
                todo.push(p.clone());
                format!("dir {:o} {}:{}", m.mode(), m.uid(), m.gid())
            } else {
                let t = if times { format!(" mtime {}.{}", m.mtime(), m.mtime_nsec()) } else { String::new() };
                format!("file {:o} {}:{} {}{t}", m.mode(), m.uid(), m.gid(), sha(&p))
            };
            out.push((p.strip_prefix(root).expect("inside").to_path_buf(), what));
        }
    }
    out.sort();
    out
}

async fn undo(env: &TestEnv, action: &Value) -> Value {
    let id = action["id"].as_str().expect("id").to_string();
    let u = env
        .admin(move |c| c.post(&format!("/api/v1/actions/{id}/undo"), &json!({ "comment": "false positive" })))
        .await
        .expect("undo");
    let undo_id = u["id"].as_str().expect("id").to_string();
    eventually!(30, "undo finished", matches!(env.action_status(&undo_id).await.as_str(), "succeeded" | "failed"));
    env.action(&undo_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undoing_delete_file_and_remove_persistence_restores_byte_identical_state() {
    use std::os::unix::fs::{chown, symlink};
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("undo").await;
    let lab = tempfile::tempdir().expect("tempdir");
    let root = lab.path().join("root");
    let root_for_agent = root.clone();
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = root_for_agent);
    eventually!(10, "online", env.device_status(device).await == "online");

    // The file, owned by nobody, 0640, with old times.
    let files = lab.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    let bin = files.join("dropper");
    std::fs::write(&bin, b"#!/bin/sh\necho pwned\n").expect("write");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    chown(&bin, Some(65534), Some(65534)).expect("chown");
    let old = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_456_789);
    let times = std::fs::FileTimes::new().set_accessed(old).set_modified(old);
    std::fs::File::options().write(true).open(&bin).and_then(|f| f.set_times(times)).expect("times");
    let b = bin.display();

    // Its persistence: a crontab line between others, a unit with its
    // timer and enablement link, a line in a user's .bashrc.
    let sys = root.join("etc/systemd/system");
    std::fs::create_dir_all(sys.join("timers.target.wants")).expect("mkdir");
    std::fs::write(root.join("etc/crontab"), format!("SHELL=/bin/sh\n*/5 * * * * root {b}\n0 3 * * * root true\n"))
        .expect("crontab");
    std::fs::set_permissions(root.join("etc/crontab"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(sys.join("dropper.service"), format!("[Service]\nExecStart={b} --quiet\n")).expect("unit");
    std::fs::write(sys.join("dropper.timer"), "[Timer]\nOnCalendar=hourly\n").expect("timer");
    symlink("../dropper.timer", sys.join("timers.target.wants/dropper.timer")).expect("link");
    let home = root.join("home/ann");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join(".bashrc"), format!("alias ll='ls -l'\n{b} &\nexport EDITOR=vi\n")).expect("bashrc");
    std::fs::set_permissions(home.join(".bashrc"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    chown(&home, Some(65534), Some(65534)).expect("chown");
    chown(home.join(".bashrc"), Some(65534), Some(65534)).expect("chown");

    let persistence_before = snapshot(&root, false);
    let files_before = snapshot(&files, true);

    let removed = act(&env, device, "remove_persistence", json!({ "path": bin })).await;
    assert_eq!(removed["status"], "succeeded", "{removed}");
    assert_eq!(removed["result"]["output"]["removed"].as_array().map(Vec::len), Some(5), "{removed}");
    assert_ne!(snapshot(&root, false), persistence_before, "nothing was removed");
    let restored = undo(&env, &removed).await;
    assert_eq!(
        (restored["kind"].as_str(), restored["status"].as_str()),
        (Some("restore_persistence"), Some("succeeded"))
    );
    assert_eq!(snapshot(&root, false), persistence_before, "persistence put back byte for byte");
    let id = removed["id"].as_str().expect("id").to_string();
    let again = env.admin(move |c| c.post(&format!("/api/v1/actions/{id}/undo"), &json!({ "comment": "again" }))).await;
    let refused = again.expect_err("an undone removal is undone once").to_string();
    assert!(refused.contains("already undone"), "{refused}");

    let deleted = act(&env, device, "delete_file", json!({ "path": bin })).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert!(!bin.exists());
    let released = undo(&env, &deleted).await;
    assert_eq!(
        (released["kind"].as_str(), released["status"].as_str()),
        (Some("release_from_quarantine"), Some("succeeded"))
    );
    assert_eq!(snapshot(&files, true), files_before, "the file is back with its bytes, owner, mode and times");
    assert_eq!(snapshot(&root, false), persistence_before, "and so is its persistence");
}
