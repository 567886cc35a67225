//! Offboarding from the coordinator (an approved action) and locally (a
//! signed token for a machine that cannot reach the coordinator).

use picket_agent::offboard::{offboard_locally, verify_token, OffboardError};
use picket_agent::platform::Unsupported;
use picket_agent::state::StateDir;
use picket_e2e::raw::{self, Outcome};
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_offboard_wipes_the_device_and_refuses_it_from_then_on() {
    for db in picket_e2e::databases().await {
        let mut env = TestEnv::start(&db).await;
        let (device, dir) = env.enroll("leaving").await;
        let old_identity = raw::agent_config(&dir);
        let agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");
        let bob = env.token("bob", "approver").await;

        let path = format!("/api/v1/devices/{device}/actions");
        let body = json!({ "kind": "offboard", "params": {}, "comment": "decommissioned" });
        let action = env.admin(move |c| c.post(&path, &body)).await.expect("create");
        assert_eq!(action["status"], "pending_approval", "offboard needs an approver by default");
        let id = action["id"].as_str().expect("id").to_string();
        let approve = format!("/api/v1/actions/{id}/approve");
        env.api(&bob, move |c| c.post(&approve, &json!({ "comment": "ticket 42" }))).await.expect("approve");

        eventually!(15, format!("{db:?}: offboard succeeded"), env.action_status(&id).await == "succeeded");
        eventually!(10, "device offboarded", env.device_status(device).await == "offboarded");
        let finished = tokio::time::timeout(std::time::Duration::from_secs(10), agent.task).await;
        assert!(matches!(finished, Ok(Ok(Ok(())))), "the agent exits cleanly: {finished:?}");
        for file in ["device.key", "device.pem", "ca.pem", "enrollment.json", "journal"] {
            assert!(!dir.join(file).exists(), "{file} left behind");
        }
        let outcome = raw::try_session(env.agent_addr(), old_identity).await;
        assert!(matches!(outcome, Outcome::Failed(_)), "the old certificate is refused: {outcome:?}");
        let kept = env.admin(move |c| c.get(&format!("/api/v1/actions?device={device}"))).await.expect("history");
        assert_eq!(kept["items"].as_array().map(Vec::len), Some(1), "the history is kept: {kept}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_offboarding_token_works_offline_for_its_device_only() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let (device, dir) = env.enroll("offline").await;
    let (other, other_dir) = env.enroll("bystander").await;
    let path = format!("/api/v1/devices/{device}/offboarding-token");
    let t = env.admin(move |c| c.post(&path, &json!({ "expires_in_hours": 2 }))).await.expect("token");
    let token = t["token"].as_str().expect("token").to_string();
    assert!(t["offboard_command"].as_str().is_some_and(|c| c.ends_with(&token)));
    assert_eq!(env.device_status(device).await, "offboarded", "offboarded on the coordinator at once");
    assert_eq!(env.device_status(other).await, "offline");

    let now = picket_agent::clock::now_ms();
    let state = StateDir::new(&dir);
    let other_state = StateDir::new(&other_dir);
    assert!(
        matches!(verify_token(&other_state, &token, now), Err(OffboardError::Token(m)) if m.contains("for device"))
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('0') { '1' } else { '0' });
    assert!(matches!(verify_token(&state, &tampered, now), Err(OffboardError::Token(m)) if m.contains("signature")));
    let expired = env.coordinator().gateway.ca.offboarding_token(device, now - 1).expect("sign");
    assert!(matches!(verify_token(&state, &expired, now), Err(OffboardError::Token(m)) if m.contains("expired")));

    let report = offboard_locally(&Unsupported, &state, &token).expect("offboard");
    assert_eq!(report.device_id, device);
    assert!(!dir.join("device.key").exists() && !dir.join("enrollment.json").exists());
    assert!(other_dir.join("device.key").exists(), "the other device is untouched");
}
