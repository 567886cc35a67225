//! The agent's secrets never leave the device, whatever path leads to them:
//! a responder's `request_sample` of the agent's private key (directly, via
//! a user's symlink to the state dir, via a hard link), of the vault key or
//! of /etc/shadow is refused with the reason; a package collected while a
//! user's `~/.config/autostart` points into the state dir records that place
//! as refused and holds no byte of the key. Real coordinator, real agent,
//! the symlink planted by an unprivileged user (`nobody`, via setpriv).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use picket_e2e::attacker::{as_nobody, can_switch_users, give_to_nobody};
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

async fn run(env: &TestEnv, device: Uuid, kind: &str, params: Value) -> Value {
    let body = json!({ "kind": kind, "params": params, "comment": "e2e" });
    // Samples of the key's places wait for a second person: the attack
    // assumes approval was obtained, and the agent still refuses.
    let a = env.request_action(device, body).await;
    let id = a["id"].as_str().expect("id").to_string();
    eventually!(60, "finished", matches!(env.action_status(&id).await.as_str(), "succeeded" | "failed"));
    env.action(&id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn samples_and_packages_never_carry_the_agents_key_the_vault_key_or_shadow() {
    if !can_switch_users() {
        return;
    }
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, state) = env.enroll("victim").await;
    let lab = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(lab.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = lab.path().join("root");
    let home = root.join("home/mallory");
    std::fs::create_dir_all(home.join(".config")).expect("home");
    give_to_nobody(&home);
    // The user links into the agent's state dir (the user cannot read it,
    // but root following the links could).
    as_nobody(&home, &format!("ln -s {s} .config/autostart && ln -s {s} statedir", s = state.display()));
    let r = root.clone();
    let _agent = env.start_agent_with(device, &state, move |c| c.persistence_root = r);
    eventually!(10, "online", env.device_status(device).await == "online");
    // The vault key exists once the agent runs; a hard link to it elsewhere.
    eventually!(10, "vault key", state.join("vault/key").exists());
    let alias = lab.path().join("harmless.bin");
    std::fs::hard_link(state.join("vault/key"), &alias).expect("hard link");

    for path in [
        state.join("device.key"),
        home.join("statedir/device.key"),
        alias.clone(),
        Path::new("/etc/shadow").to_path_buf(),
    ] {
        let a = run(&env, device, "request_sample", json!({ "path": path })).await;
        assert_eq!(a["status"], "failed", "{}: {a}", path.display());
        let error = a["result"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("protected") || error.contains("symbolic link"),
            "{}: says why: {error}",
            path.display()
        );
    }
    let samples = env.admin(|c| c.get("/api/v1/samples")).await.expect("samples");
    assert_eq!(samples["items"].as_array().map(Vec::len), Some(0), "no sample was stored: {samples}");

    let a = run(&env, device, "collect_package", json!({})).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    let id = a["id"].as_str().expect("id").to_string();
    let archive = env
        .admin(move |c| {
            let mut buf = Vec::new();
            c.download(&format!("/api/v1/actions/{id}/package"), &mut buf, &mut |_, _| {})?;
            Ok(buf)
        })
        .await
        .expect("download");
    let x = tempfile::tempdir().expect("tempdir");
    std::fs::write(x.path().join("p.tar.gz"), &archive).expect("write");
    assert!(Command::new("tar").args(["-xzf", "p.tar.gz"]).current_dir(x.path()).status().expect("tar").success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(x.path().join("manifest.json")).expect("manifest")).expect("json");
    let refused: Vec<&Value> = manifest["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["status"] == "refused" && i["name"].as_str().is_some_and(|n| n.contains("mallory/autostart")))
        .collect();
    assert_eq!(refused.len(), 1, "the linked autostart dir is listed as refused: {manifest}");
    assert!(refused[0]["error"].as_str().is_some_and(|e| e.contains("symbolic link")), "{}", refused[0]);
    let key = std::fs::read_to_string(state.join("device.key")).expect("key");
    let key_line = key.lines().nth(1).expect("key body");
    let vault_key = std::fs::read(state.join("vault/key")).expect("vault key");
    for e in ignore::WalkBuilder::new(x.path()).standard_filters(false).build().flatten() {
        if !e.path().is_file() {
            continue;
        }
        let bytes = std::fs::read(e.path()).expect("read");
        assert!(!String::from_utf8_lossy(&bytes).contains(key_line), "{} holds the key", e.path().display());
        assert!(!bytes.windows(vault_key.len()).any(|w| w == vault_key), "{} holds the vault key", e.path().display());
    }
}
