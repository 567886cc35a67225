//! collect_package end to end on the CI machine: every folder, a manifest
//! that matches the files, planted persistence visible, no shadow hash and
//! no agent key inside, one collection at a time (409), and an upload that
//! survives a coordinator restart with the SHA-256 intact.

use std::path::{Path, PathBuf};

use picket_coordinator::client::ClientError;
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_is_complete_consistent_private_and_survives_a_coordinator_restart() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("investigated").await;
    let lab = tempfile::tempdir().expect("tempdir");
    let root = lab.path().join("root");
    std::fs::create_dir_all(root.join("etc/systemd/system")).expect("mkdir");
    std::fs::write(root.join("etc/crontab"), "*/10 * * * * root /tmp/.planted-job --beacon\n").expect("crontab");
    std::fs::write(root.join("etc/systemd/system/planted.service"), "[Service]\nExecStart=/tmp/.planted-unit\n")
        .expect("unit");
    let r = root.clone();
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = r);
    eventually!(10, "online", env.device_status(device).await == "online");

    let body = json!({ "kind": "collect_package", "params": {}, "comment": "triage" });
    let b = body.clone();
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &b)).await.expect("create");
    let id = a["id"].as_str().expect("id").to_string();
    let second = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await;
    match second {
        Err(ClientError::Api { status: 409, message, .. }) => assert!(message.contains(&id), "{message}"),
        other => panic!("expected 409 naming the running action, got {other:?}"),
    }
    // The coordinator goes away while the agent collects and uploads.
    eventually!(20, "running", env.action_status(&id).await == "running");
    env.stop_coordinator().await;
    let state = picket_agent::state::StateDir::new(&dir);
    eventually!(
        20,
        "the agent notices the coordinator is gone",
        state.status().ok().flatten().is_some_and(|s| !s.connected)
    );
    env.restart_coordinator().await;
    eventually!(120, "package uploaded", env.action_status(&id).await == "succeeded");
    let out = env.action(&id).await["result"]["output"].clone();

    let path = format!("/api/v1/actions/{id}/package");
    let archive = env
        .admin(move |c| {
            let mut buf = Vec::new();
            c.download(&path, &mut buf, &mut |_, _| {})?;
            Ok(buf)
        })
        .await
        .expect("download");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&archive));
    assert_eq!(out["sha256"], sha.as_str(), "the stored package is the one the agent made");
    assert_eq!(out["size"].as_u64(), Some(archive.len() as u64));

    // A byte range, for resumed downloads.
    let url = format!("{}/api/v1/actions/{id}/package", env.api_url());
    let token = env.admin_token.clone();
    let client = env.client(&token);
    let part = tokio::task::spawn_blocking(move || {
        let mut res = client
            .agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Range", "bytes=10-19")
            .call()
            .expect("range");
        (res.status().as_u16(), res.body_mut().read_to_vec().expect("body"))
    })
    .await
    .expect("task");
    assert_eq!((part.0, part.1.as_slice()), (206, &archive[10..20]));

    let x = tempfile::tempdir().expect("tempdir");
    std::fs::write(x.path().join("p.tar.gz"), &archive).expect("write");
    let status =
        std::process::Command::new("tar").arg("-xzf").arg("p.tar.gz").current_dir(x.path()).status().expect("tar");
    assert!(status.success());
    std::fs::remove_file(x.path().join("p.tar.gz")).expect("rm");
    for folder in [
        "system_info",
        "processes",
        "network",
        "users_and_groups",
        "autoruns",
        "scheduled_tasks",
        "services",
        "installed_programs",
        "kernel_modules",
        "open_files",
        "temp_directories",
        "logs",
        "picket",
    ] {
        assert!(x.path().join(folder).is_dir(), "{folder}/ missing");
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(x.path().join("manifest.json")).expect("manifest")).expect("json");
    let items = manifest["items"].as_array().expect("items");
    for item in items.iter().filter(|i| i["status"] == "ok") {
        let name = item["name"].as_str().expect("name");
        let bytes = std::fs::read(x.path().join(name)).unwrap_or_else(|e| panic!("{name} listed but missing: {e}"));
        assert_eq!(item["size"].as_u64(), Some(bytes.len() as u64), "{name}");
        assert_eq!(item["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)).as_str(), "{name}");
        assert!(item["source"].as_str().is_some_and(|s| !s.is_empty()), "{name} has no source");
    }
    for item in items.iter().filter(|i| i["status"] != "ok") {
        assert!(item["error"].as_str().is_some_and(|e| !e.is_empty()), "a failed item says why: {item}");
    }
    let files = files_under(x.path());
    let listed: std::collections::HashSet<String> =
        items.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect();
    for f in &files {
        let rel = f.strip_prefix(x.path()).expect("rel").display().to_string();
        assert!(rel == "manifest.json" || listed.contains(&rel), "{rel} is in the archive but not in the manifest");
    }
    assert!(manifest["not_collected"].as_array().is_some_and(|n| !n.is_empty()));
    let crontab = std::fs::read_to_string(x.path().join("scheduled_tasks/crontab")).expect("crontab");
    assert!(crontab.contains("/tmp/.planted-job"));
    let unit =
        std::fs::read_to_string(x.path().join("autoruns/systemd/etc_systemd_system/planted.service")).expect("unit");
    assert!(unit.contains("/tmp/.planted-unit"));
    let summary = std::fs::read_to_string(x.path().join("summary.html")).expect("summary");
    assert!(summary.contains("Highlights") && summary.contains("listening"));
    let processes: Value =
        serde_json::from_slice(&std::fs::read(x.path().join("processes/processes.json")).expect("p")).expect("json");
    let me = std::process::id();
    assert!(processes.as_array().expect("list").iter().any(|p| p["pid"] == me && p["sha256"].is_string()));

    // Never a password hash, never the agent's key.
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let hashes: Vec<&str> = shadow.lines().filter_map(|l| l.split(':').nth(1)).filter(|h| h.len() > 12).collect();
    let key = std::fs::read_to_string(dir.join("device.key")).expect("key");
    let key_line = key.lines().nth(1).expect("key body");
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        for h in &hashes {
            assert!(!text.contains(h), "{} holds a password hash", f.display());
        }
        assert!(!text.contains(key_line), "{} holds the agent's key", f.display());
    }
}
