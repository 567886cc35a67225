//! `picketctl --wait`: the real binary follows an action through approval
//! and a real agent's run to its end, and exits with its outcome.

use std::process::Output;

use picket_e2e::{eventually, Ctl, Db, Target, TestEnv};
use serde_json::json;

/// picketctl with `--wait`.
fn waited(ctl: &Ctl, args: &[&str]) -> Output {
    ctl.command().arg("--wait").args(args).output().expect("run picketctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_follows_an_action_through_approval_to_its_outcome_and_exits_with_it() {
    let mut env =
        TestEnv::start_with(&Db::Sqlite, |c| c.actions.approval_required_kinds = vec!["kill_process".into()]).await;
    let (device, dir) = env.enroll("waited").await;
    let _agent = env.start_agent(device, &dir);
    eventually!(10, "online", env.device_status(device).await == "online");
    let ctl = std::sync::Arc::new(env.ctl("waiter", "responder").await);
    let device_arg = device.to_string();

    // A scan runs to success: exit 0, the final action printed.
    let lab = tempfile::tempdir().expect("lab");
    std::fs::write(lab.path().join("clean.txt"), b"nothing to see").expect("write");
    let (c, d, path) = (ctl.clone(), device_arg.clone(), lab.path().display().to_string());
    let out =
        tokio::task::spawn_blocking(move || waited(&c, &["scan", &d, "--path", &path, "--comment", "wait for it"]))
            .await
            .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("succeeded"), "{}", text(&out.stdout));

    // A kill waits for its approver, then runs: exit 0 and the target gone.
    let mut target = Target::sleeper();
    let (c, d, pid) = (ctl.clone(), device_arg.clone(), target.pid().to_string());
    let waiting =
        tokio::task::spawn_blocking(move || waited(&c, &["kill-process", &d, "--pid", &pid, "--comment", "stop it"]));
    let mut pending: String;
    eventually!(10, "the kill waits for approval", {
        let list = env.admin(|c| c.get("/api/v1/actions?status=pending_approval")).await.expect("list");
        pending = list["items"][0]["id"].as_str().unwrap_or_default().to_string();
        !pending.is_empty()
    });
    assert!(!waiting.is_finished(), "still waiting while nobody approved");
    let approver = env.token("approver", "approver").await;
    let path = format!("/api/v1/actions/{pending}/approve");
    env.api(&approver, move |c| c.post(&path, &json!({ "comment": "go" }))).await.expect("approve");
    let out = waiting.await.expect("join");
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(target.exited(), "the process was killed");

    // A failed action: exit 1 and the agent's reason.
    let (c, d) = (ctl.clone(), device_arg.clone());
    let out = tokio::task::spawn_blocking(move || {
        waited(&c, &["request-sample", &d, "--path", "/nonexistent/picket/sample", "--comment", "grab it"])
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("ended failed: "), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("No such file"), "the agent's reason: {}", text(&out.stderr));
}
