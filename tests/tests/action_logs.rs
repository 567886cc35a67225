//! Every log line about one action names it: the agent and the
//! coordinator write them inside a span carrying the action's id, kind and
//! device, so an operator can follow one quarantine through both logs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use picket_e2e::{eventually, Db, TestEnv};
use serde_json::json;

/// The log, captured in memory (the test binary is its own process, so
/// this subscriber is the only one).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_log_line_of_a_quarantine_names_its_action_on_both_sides() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("picket_agent=debug,picket_coordinator=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("logged").await;
    let lab = tempfile::tempdir().expect("tempdir");
    let root = lab.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let bin = lab.path().join("miner");
    std::fs::write(&bin, b"#!/bin/sh\nsleep 600\n").expect("write");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(root.join("etc/crontab"), format!("* * * * * root {}\n", bin.display())).expect("crontab");
    let r = root.clone();
    let _agent = env.start_agent_with(device, &dir, move |c| c.persistence_root = r);
    eventually!(10, "online", env.device_status(device).await == "online");

    let body = json!({ "kind": "stop_and_quarantine", "params": { "path": bin }, "comment": "logs" });
    let a = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("create");
    let id = a["id"].as_str().expect("id").to_string();
    // Every line checked below is written before the result is stored.
    eventually!(30, "quarantined", env.action_status(&id).await == "succeeded");

    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    let about_actions = ["picket_agent::actions", "picket_agent::quarantine", "picket_coordinator::gateway::dispatch"];
    let lines: Vec<&str> =
        text.lines().filter(|l| about_actions.iter().any(|t| l.contains(&format!(" {t}")))).collect();
    for wanted in ["action received", "action running", "file quarantined", "action finished", "action result stored"] {
        assert!(lines.iter().any(|l| l.contains(wanted)), "no {wanted:?} line in:\n{}", lines.join("\n"));
    }
    // `action{id=… kind=… device=…}` (a field recorded later comes last).
    let fields = [format!("id={id}"), "kind=stop_and_quarantine".to_string(), format!("device={device}")];
    let named = |line: &str| {
        let span = line.split_once("action{").and_then(|(_, rest)| rest.split_once('}')).map(|(f, _)| f);
        span.is_some_and(|f| fields.iter().all(|x| f.split(' ').any(|y| y == x)))
    };
    let unnamed: Vec<&&str> = lines.iter().filter(|l| !named(l)).collect();
    assert!(unnamed.is_empty(), "lines without the span {fields:?}:\n{unnamed:#?}");
}
