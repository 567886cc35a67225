//! Device certificates are renewed over the authenticated session: with a
//! 60-second lifetime the agent makes a new key at two thirds of it, gets a
//! certificate for it, reconnects with it — and the actions requested
//! around the renewal all run. The replaced certificate is refused from
//! then on.

use std::time::Duration;

use picket_e2e::raw::{self, Outcome};
use picket_e2e::{eventually, Target, TestEnv};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_renews_its_certificate_with_a_new_key_and_loses_no_action() {
    for db in picket_e2e::databases().await {
        let mut env = TestEnv::start_with(&db, |c| c.device_cert_lifetime_secs = 60).await;
        let (device, dir) = env.enroll("renewing").await;
        let old_key = std::fs::read(dir.join("device.key")).expect("key");
        let old_identity = raw::agent_config(&dir);
        let first = env.device(device).await["certificate_expires_at"].clone();
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");

        // Actions keep coming through the renewal (due ~38 s after issue).
        let mut targets = Vec::new();
        let mut ids = Vec::new();
        let started = tokio::time::Instant::now();
        let mut after_renewal = 0;
        while after_renewal < 3 {
            assert!(started.elapsed() < Duration::from_secs(90), "no renewal within 90 s");
            if env.device(device).await["certificate_expires_at"] != first {
                after_renewal += 1;
            }
            let target = Target::sleeper();
            let body =
                json!({ "kind": "kill_process", "params": { "pid": target.pid() }, "comment": "through the renewal" });
            let a = env.request_action(device, body).await;
            ids.push(a["id"].as_str().expect("id").to_string());
            targets.push(target);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let renewed = env.device(device).await;
        assert_ne!(renewed["certificate_expires_at"], first, "renewed: {renewed}");
        assert_ne!(std::fs::read(dir.join("device.key")).expect("key"), old_key, "a new key");
        assert!(!dir.join("device.next.pem").exists() && !dir.join("device.next.key").exists());
        eventually!(20, "online with the new certificate", env.device_status(device).await == "online");
        for id in &ids {
            eventually!(30, format!("action {id} ran"), env.action_status(id).await == "succeeded");
        }
        for t in &mut targets {
            assert!(t.exited(), "every target was killed");
        }
        let audit = env.admin(|c| c.get("/api/v1/audit?limit=1000")).await.expect("audit");
        assert!(audit.to_string().contains("device.renew_certificate"), "{audit}");
        // The certificate the renewal replaced no longer opens a session.
        let outcome = raw::try_session(env.agent_addr(), old_identity).await;
        assert!(matches!(outcome, Outcome::Failed(_)), "the old certificate is refused: {outcome:?}");
    }
}

/// Renewal answers that never reach the device (asked twice, both lost):
/// the certificate it renewed from still opens its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_renewal_answers_never_lock_a_device_out() {
    use picket_common::io::{read_frame, write_frame};
    use picket_common::limits::DEFAULT_MAX_FRAME;
    use picket_common::proto::{AgentMsg, CoordMsg};
    let env = TestEnv::start(&picket_e2e::Db::Sqlite).await;
    let (_device, dir) = env.enroll("unlucky").await;
    let mut tls = raw::session(env.agent_addr(), &dir).await;
    for _ in 0..2 {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let csr =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("params").serialize_request(&key).expect("csr");
        let ask = AgentMsg::RenewCertificate { csr_der: csr.der().to_vec() };
        write_frame(&mut tls, &ask, DEFAULT_MAX_FRAME).await.expect("ask");
        loop {
            match read_frame::<_, CoordMsg>(&mut tls, DEFAULT_MAX_FRAME).await.expect("read").expect("open") {
                CoordMsg::CertificateRenewed { .. } => break,
                _ => continue,
            }
        }
    }
    drop(tls);
    let outcome = raw::try_session(env.agent_addr(), raw::agent_config(&dir)).await;
    assert_eq!(outcome, Outcome::Welcome, "the certificate in use still works");
}
