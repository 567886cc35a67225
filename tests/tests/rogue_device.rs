//! A rogue agent with a real device certificate: everything it reports is
//! attacker-controlled, so it must not buy automatic remediation with a
//! severity it made up, reach other devices without an approver, or flood
//! the store. It speaks the real protocol over mutual TLS with its own
//! enrolled identity (`raw::connect`), not the agent code.

use picket_common::detection::{AlertReport, Detection, Severity};
use picket_common::io::{read_frame, write_frame};
use picket_common::limits::DEFAULT_MAX_FRAME;
use picket_common::proto::{AgentMsg, CoordMsg};
use picket_e2e::raw;
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::Value;
use uuid::Uuid;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Send a report and wait for its acknowledgement (other frames skipped).
async fn report(tls: &mut Tls, detections: Vec<Detection>) {
    let r = AlertReport { report_id: Uuid::new_v4(), source: "realtime".into(), observed_ms: 0, detections };
    let id = r.report_id;
    write_frame(tls, &AgentMsg::Alert(r), DEFAULT_MAX_FRAME).await.expect("alert");
    loop {
        match read_frame::<_, CoordMsg>(tls, DEFAULT_MAX_FRAME).await.expect("read").expect("open") {
            CoordMsg::AlertAck { report_id } if report_id == id => return,
            _ => continue,
        }
    }
}

fn detection(path: &str, sha: &str, rule: &str, namespace: &str, severity: Severity) -> Detection {
    Detection {
        path: path.into(),
        sha256: sha.into(),
        size: 68,
        rule: rule.into(),
        namespace: namespace.into(),
        severity,
    }
}

/// The investigation of `path`, once its first action exists (it is
/// created just after the investigation).
async fn investigation_for(env: &TestEnv, device: Uuid, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let list = env.admin(move |c| c.get(&format!("/api/v1/investigations?device={device}"))).await.expect("list");
        if let Some(i) = list["items"].as_array().into_iter().flatten().find(|i| i["subject"]["path"] == path) {
            let id = i["id"].as_str().expect("id").to_string();
            let shown = env.admin(move |c| c.get(&format!("/api/v1/investigations/{id}"))).await.expect("show");
            if shown["actions"].as_array().is_some_and(|a| !a.is_empty()) {
                return shown;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no investigation of {path}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_made_up_severity_buys_no_automatic_remediation_and_no_reach_into_other_devices() {
    for db in picket_e2e::databases().await {
        let env = TestEnv::start_with(&db, |c| c.investigations.automatic = true).await;
        let (rogue, state) = env.enroll("rogue").await;
        let (other, _other_state) = env.enroll("bystander").await;
        let mut tls = raw::session(env.agent_addr(), &state).await;
        let sha = "ab".repeat(32);
        // A rule no bundle of this coordinator has, claimed malicious, in a
        // temp folder under `full` automation.
        report(
            &mut tls,
            vec![detection("/tmp/rogue-made-up", &sha, "Totally_Malicious", "evil.yar", Severity::Malicious)],
        )
        .await;
        let inv = investigation_for(&env, rogue, "/tmp/rogue-made-up").await;
        let id = inv["id"].as_str().expect("id").to_string();
        eventually!(30, "first action proposed", {
            let id = id.clone();
            let shown = env.admin(move |c| c.get(&format!("/api/v1/investigations/{id}"))).await.expect("show");
            shown["actions"].as_array().is_some_and(|a| a.iter().any(|a| a["kind"] == "stop_and_quarantine"))
        });
        let shown = env.admin(move |c| c.get(&format!("/api/v1/investigations/{id}"))).await.expect("show");
        let q = shown["actions"].as_array().expect("actions").iter().find(|a| a["kind"] == "stop_and_quarantine");
        let q = q.expect("quarantine");
        assert_eq!(q["status"], "pending_approval", "an unknown rule is suspicious at most: {shown}");
        assert!(q["comment"].as_str().is_some_and(|c| c.contains("not one the coordinator distributes")), "{q}");
        assert_eq!(q["params"]["expected_sha256"], sha.as_str());

        // The built-in EICAR rule is known: its remediation is automatic —
        // on the reporting device only, and only for the content it names.
        let sha2 = "cd".repeat(32);
        report(
            &mut tls,
            vec![detection("/tmp/rogue-eicar", &sha2, "EICAR_Test_File", "builtin", Severity::Informational)],
        )
        .await;
        let inv = investigation_for(&env, rogue, "/tmp/rogue-eicar").await;
        let q =
            inv["actions"].as_array().expect("actions").iter().find(|a| a["kind"] == "stop_and_quarantine").cloned();
        let q = q.expect("quarantine proposed at once");
        assert_ne!(q["status"], "pending_approval", "the coordinator's own severity (malicious) decides: {inv}");
        assert_eq!(
            (q["device_id"].as_str(), q["params"]["expected_sha256"].as_str()),
            (Some(rogue.to_string().as_str()), Some(sha2.as_str()))
        );
        let other_actions = env.admin(move |c| c.get(&format!("/api/v1/actions?device={other}"))).await.expect("list");
        assert_eq!(other_actions["items"].as_array().map(Vec::len), Some(0), "nothing reaches the bystander");
        drop(tls);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_flooding_detections_is_capped_and_the_excess_counted_not_stored() {
    let env = TestEnv::start_with(&Db::Sqlite, |c| c.max_alerts_per_minute = 50).await;
    let (rogue, state) = env.enroll("flooder").await;
    let mut tls = raw::session(env.agent_addr(), &state).await;
    let flood: Vec<Detection> = (0..200)
        .map(|i| {
            detection(
                &format!("/tmp/flood-{i}"),
                &format!("{i:064x}"),
                "EICAR_Test_File",
                "builtin",
                Severity::Malicious,
            )
        })
        .collect();
    report(&mut tls, flood).await;
    let alerts = env.admin(move |c| c.get(&format!("/api/v1/alerts?device={rogue}&limit=1000"))).await.expect("alerts");
    assert_eq!(alerts["items"].as_array().map(Vec::len), Some(50), "only the device's rate is stored");
    assert_eq!(env.device(rogue).await["alerts_dropped"], 150);
    let metrics = env.api("", |c| c.get_text("/metrics")).await.expect("metrics");
    assert!(metrics.contains("picket_alerts_dropped_total 150"), "{metrics}");
    // A reconnect does not refill the bucket.
    drop(tls);
    let mut tls = raw::session(env.agent_addr(), &state).await;
    report(
        &mut tls,
        vec![detection("/tmp/again", &"ee".repeat(32), "EICAR_Test_File", "builtin", Severity::Malicious)],
    )
    .await;
    assert_eq!(env.device(rogue).await["alerts_dropped"], 151);
}
