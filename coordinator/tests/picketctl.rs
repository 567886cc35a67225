//! picketctl as an operator runs it: the real binary against a running coordinator.

use std::process::Command;

use picket_coordinator::{Config, Coordinator};
use tokio_util::sync::CancellationToken;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn picketctl(server: &str, ca_file: Option<&str>, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picketctl"));
    cmd.env_remove("PICKET_TOKEN")
        .env_remove("PICKET_TOKEN_FILE")
        .env_remove("PICKET_CA_FILE")
        .env_remove("PICKET_CA_FINGERPRINT")
        .env("PICKET_SERVER", server);
    if let Some(t) = token {
        cmd.env("PICKET_TOKEN", t);
    }
    if let Some(ca) = ca_file {
        cmd.env("PICKET_CA_FILE", ca);
    }
    let out = cmd.args(args).output().expect("run picketctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_print_tables_json_and_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        agent_listen: "127.0.0.1:0".parse().expect("addr"),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let c = Coordinator::start(config, shutdown.clone()).await.expect("start");
    let server = c.api_url();
    assert!(server.starts_with("https://"));
    let ca = dir.path().join("pki/ca.pem").display().to_string();
    let token = std::fs::read_to_string(&c.admin_token_path).expect("token").trim().to_string();

    let run = |token: Option<String>, args: Vec<&'static str>| {
        let (server, ca) = (server.clone(), ca.clone());
        tokio::task::spawn_blocking(move || picketctl(&server, Some(&ca), token.as_deref(), &args))
    };

    // HTTPS: without the CA, or with a CA that is not the pinned one, nothing is sent.
    let (s, t) = (server.clone(), token.clone());
    let no_ca =
        tokio::task::spawn_blocking(move || picketctl(&s, None, Some(&t), &["devices", "list"])).await.expect("run");
    assert_ne!(no_ca.code, 0);
    assert!(no_ca.stderr.contains("--ca-file"), "{}", no_ca.stderr);
    let pinned = run(Some(token.clone()), vec!["--ca-fingerprint", "00ff", "devices", "list"]).await.expect("run");
    assert_ne!(pinned.code, 0);
    assert!(pinned.stderr.contains("refusing to trust it"), "{}", pinned.stderr);
    let fingerprint = c.ca_fingerprint.clone();
    let (s, a, t) = (server.clone(), ca.clone(), token.clone());
    let right = tokio::task::spawn_blocking(move || {
        picketctl(&s, Some(&a), Some(&t), &["--ca-fingerprint", &fingerprint, "devices", "list"])
    })
    .await
    .expect("run");
    assert_eq!(right.code, 0, "{}", right.stderr);

    let created = run(Some(token.clone()), vec!["enroll-token", "create", "--group", "lab", "--max-uses", "3"])
        .await
        .expect("run");
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert!(created.stdout.contains("picket-agent enroll --coordinator "), "{}", created.stdout);
    assert!(created.stdout.contains(&c.ca_fingerprint));

    let listed = run(Some(token.clone()), vec!["enroll-token", "list"]).await.expect("run");
    assert!(listed.stdout.starts_with("ID "), "{}", listed.stdout);
    assert!(listed.stdout.contains("lab"));

    let json = run(Some(token.clone()), vec!["--json", "actions", "list", "--pending"]).await.expect("run");
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json.stdout).expect("json"), serde_json::json!([]));

    let csv = run(Some(token.clone()), vec!["actions", "export", "--csv"]).await.expect("run");
    assert!(csv.stdout.starts_with("id,kind,device_id,"), "{}", csv.stdout);

    let bad = run(Some("pka_wrong".into()), vec!["devices", "list"]).await.expect("run");
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("401") && bad.stderr.contains("invalid API token"), "{}", bad.stderr);

    let none = run(None, vec!["devices", "list"]).await.expect("run");
    assert_ne!(none.code, 0);
    assert!(none.stderr.contains("no API token"), "{}", none.stderr);

    let missing =
        run(Some(token.clone()), vec!["devices", "show", "0b7f6c7e-1111-4222-8333-444455556666"]).await.expect("run");
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    shutdown.cancel();
    c.join().await;
    let down = run(Some(token), vec!["devices", "list"]).await.expect("run");
    assert_ne!(down.code, 0);
    assert!(down.stderr.contains("cannot reach the coordinator"), "{}", down.stderr);
}
