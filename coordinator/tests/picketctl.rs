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
        .env("PICKET_SERVER", server)
        .env("PICKET_CONFIG_DIR", "/nonexistent/picket-test-config");
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

/// Runs picketctl with `config` as its config directory, `stdin` as its
/// input, and no server, CA or token from the environment.
fn ctl(config: &std::path::Path, stdin: &str, args: &[String]) -> Out {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_picketctl"))
        .env_remove("PICKET_TOKEN")
        .env_remove("PICKET_TOKEN_FILE")
        .env_remove("PICKET_CA_FILE")
        .env_remove("PICKET_CA_FINGERPRINT")
        .env_remove("PICKET_SERVER")
        .env("PICKET_CONFIG_DIR", config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run picketctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn start_at(data: &std::path::Path, api: std::net::SocketAddr, shutdown: &CancellationToken) -> Coordinator {
    let config = Config {
        data_dir: data.to_path_buf(),
        agent_listen: "127.0.0.1:0".parse().expect("addr"),
        api_listen: api,
        ..Config::default()
    };
    Coordinator::start(config, shutdown.clone()).await.expect("start")
}

/// `picketctl login`: the CA is shown and pinned only on a yes or a
/// matching fingerprint; later commands trust it alone, and a coordinator
/// with another CA at the same URL is refused with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_pins_the_ca_only_when_told_and_refuses_a_changed_one() {
    let first = tempfile::tempdir().expect("tempdir");
    let config = tempfile::tempdir().expect("tempdir");
    let cfg = config.path().to_path_buf();
    let shutdown = CancellationToken::new();
    let c = start_at(first.path(), "127.0.0.1:0".parse().expect("addr"), &shutdown).await;
    let url = c.api_url();
    let token = std::fs::read_to_string(&c.admin_token_path).expect("token").trim().to_string();
    let run = |stdin: &'static str, args: Vec<String>| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || ctl(&cfg, stdin, &args))
    };
    let login = |extra: &[&str]| {
        let mut args = vec!["login".to_string(), url.clone()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let saved = config.path().join("picketctl.toml");
    // The fingerprint as `login` prints it: AB:CD:…
    let shown = |hex: &str| {
        hex.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_ascii_uppercase()).collect::<Vec<_>>().join(":")
    };

    // Without a pin nothing is sent, and the error says how to get one.
    let list =
        vec!["--token".to_string(), token.clone(), "--server".into(), url.clone(), "devices".into(), "list".into()];
    let out = run("", list.clone()).await.expect("run");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("picketctl login"), "{}", out.stderr);

    // Asked and refused, or no answer at all: nothing pinned.
    for answer in ["n\n", ""] {
        let out = run(answer, login(&[])).await.expect("run");
        assert_ne!(out.code, 0, "{}", out.stdout);
        assert!(out.stdout.contains(&shown(&c.ca_fingerprint)), "{}", out.stdout);
        assert!(out.stdout.contains("Trust this CA"), "{}", out.stdout);
        assert!(out.stderr.contains("nothing pinned"), "{}", out.stderr);
        assert!(!saved.exists());
    }
    let out = run("", login(&["--ca-fingerprint", "00ff"])).await.expect("run");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--ca-fingerprint"), "{}", out.stderr);
    assert!(!saved.exists());

    // Yes: pinned in a private file, and the URL becomes the default.
    let out = run("y\n", login(&[])).await.expect("run");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&saved).expect("saved").permissions().mode() & 0o777, 0o600);
    let out = run("", vec!["--token".into(), token.clone(), "devices".into(), "list".into()]).await.expect("run");
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Users, with the pinned server: a password from stdin, or generated and shown once.
    let users = |rest: &[&str]| {
        let mut args = vec!["--token".to_string(), token.clone(), "users".into()];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let out = run("a long enough password\n", users(&["create", "carol", "--role", "approver", "--password-stdin"]))
        .await
        .expect("run");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("carol") && !out.stdout.contains("password:"), "{}", out.stdout);
    let out = run("", users(&["create", "dave", "--role", "viewer"])).await.expect("run");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("password: ") && out.stdout.contains("shown only once"), "{}", out.stdout);
    let out = run("short\n", users(&["reset-password", "dave", "--password-stdin"])).await.expect("run");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("at least 12"), "{}", out.stderr);
    let out = run("", users(&["list"])).await.expect("run");
    assert!(out.stdout.contains("carol") && out.stdout.contains("approver") && out.stdout.contains("dave"));

    // Another coordinator (another CA) at the same address: refused.
    let addr = c.api_addr;
    shutdown.cancel();
    c.join().await;
    let second = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let c = start_at(second.path(), addr, &shutdown).await;
    let token = std::fs::read_to_string(&c.admin_token_path).expect("token").trim().to_string();
    let list = vec!["--token".to_string(), token.clone(), "devices".into(), "list".into()];
    let out = run("", list.clone()).await.expect("run");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("does not verify it"), "{}", out.stderr);
    assert!(out.stderr.contains("picketctl login"), "{}", out.stderr);

    // Logging in again warns that the CA changed; the right fingerprint pins it.
    let fingerprint = c.ca_fingerprint.clone();
    let out = run("", login(&["--ca-fingerprint", &fingerprint])).await.expect("run");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("WARNING: this is NOT the CA pinned"), "{}", out.stdout);
    let out = run("", list).await.expect("run");
    assert_eq!(out.code, 0, "{}", out.stderr);
    shutdown.cancel();
    c.join().await;
}
