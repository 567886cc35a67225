//! request_sample end to end: a file travels in chunks to the coordinator,
//! survives a coordinator restart mid-upload (resuming, not restarting), and
//! comes back out as a ZIP encrypted with `infected`; what is not a regular
//! file is refused.

use std::io::Read;
use std::time::Duration;

use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

async fn request(env: &TestEnv, device: Uuid, path: &str) -> String {
    let body = json!({ "kind": "request_sample", "params": { "path": path }, "comment": "e2e" });
    let a = env.request_action(device, body).await;
    a["id"].as_str().expect("id").to_string()
}

/// Some bytes that do not compress to nothing.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn unzip(zip: &[u8], password: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    let mut entry = archive.by_index_decrypt(0, password.as_bytes()).expect("decrypts");
    let mut out = Vec::new();
    entry.read_to_end(&mut out).expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sample_resumes_after_a_coordinator_restart_and_downloads_as_an_encrypted_zip() {
    for db in picket_e2e::databases().await {
        let mut env = TestEnv::start(&db).await;
        let (device, dir) = env.enroll("sampled").await;
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");
        let files = tempfile::tempdir().expect("tempdir");
        let size = 24 * 1024 * 1024;
        let data = content(size, 7);
        let path = files.path().join("payload.bin");
        std::fs::write(&path, &data).expect("write");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));

        let id = request(&env, device, path.to_str().expect("utf-8")).await;
        // Stop the coordinator once part of the file is there.
        let meta = env.config.data_dir.join(format!("uploads/{id}.json"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let held_at_stop = loop {
            let verified = std::fs::read(&meta)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|m| m["verified"].as_u64())
                .unwrap_or(0);
            if verified >= 1024 * 1024 {
                env.stop_coordinator().await;
                break verified;
            }
            assert!(tokio::time::Instant::now() < deadline, "the upload never started");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let on_disk: Value = serde_json::from_slice(&std::fs::read(&meta).expect("meta")).expect("json");
        let held = on_disk["verified"].as_u64().expect("verified");
        assert!(held >= held_at_stop && held < size as u64, "stopped mid-upload: {held} of {size}");
        env.restart_coordinator().await;
        eventually!(90, "sample uploaded", env.action_status(&id).await == "succeeded");
        let received = env.coordinator().gateway.uploads.received_bytes();
        assert_eq!(received, size as u64 - held, "resumed at {held}, not from the start");
        let out = env.action(&id).await["result"]["output"].clone();
        assert_eq!((out["sha256"].as_str(), out["size"].as_u64()), (Some(sha.as_str()), Some(size as u64)));

        let listed = env.admin(|c| c.get("/api/v1/samples")).await.expect("list");
        assert_eq!(listed["items"][0]["sha256"], sha.as_str());
        let mut zip = Vec::new();
        let s = sha.clone();
        let zip = env
            .admin(move |c| {
                c.download(&format!("/api/v1/samples/{s}"), &mut zip, &mut |_, _| {})?;
                Ok(zip)
            })
            .await
            .expect("download");
        assert!(!zip.windows(64).any(|w| w == &data[1000..1064]), "stored inert, not in the clear");
        assert_eq!(unzip(&zip, "infected"), data);

        let viewer = env.token("v", "viewer").await;
        let s = sha.clone();
        let refused = env.api(&viewer, move |c| c.get(&format!("/api/v1/samples/{s}"))).await;
        assert!(matches!(refused, Err(picket_coordinator::client::ClientError::Api { status: 403, .. })));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn directories_special_files_links_and_proc_are_refused() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("refuser").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let files = tempfile::tempdir().expect("tempdir");
    let fifo = files.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    std::os::unix::fs::symlink("/etc/hostname", files.path().join("link")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self", files.path().join("proc-link")).expect("symlink");
    let cases = [
        (files.path().display().to_string(), "a directory"),
        (fifo.display().to_string(), "a fifo"),
        (files.path().join("link").display().to_string(), "symbolic link"),
        (files.path().join("proc-link/status").display().to_string(), "pseudo-file"),
        ("/proc/self/status".to_string(), "pseudo-file"),
        ("/dev/null".to_string(), "pseudo-file"),
        (files.path().join("missing").display().to_string(), "no such file"),
    ];
    // A relative path is refused when requested.
    let body = json!({ "kind": "request_sample", "params": { "path": "relative/file" }, "comment": "e2e" });
    let refused = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await;
    assert!(
        matches!(&refused, Err(picket_coordinator::client::ClientError::Api { status: 400, message, .. }) if message.contains("absolute")),
        "{refused:?}"
    );
    for (path, why) in cases {
        let id = request(&env, device, &path).await;
        eventually!(20, format!("{path} refused"), env.action_status(&id).await == "failed");
        let result = env.action(&id).await["result"].clone();
        let error = result["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{path}: {result}");
    }
}
