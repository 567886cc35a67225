//! Enrollment through the real protocol, and its clear failures.

use picket_agent::enroll::{enroll, EnrollError, EnrollOptions};
use picket_agent::state::StateDir;
use picket_common::proto::RefusalReason;
use picket_e2e::{Db, TestEnv};
use serde_json::json;

fn opts(env: &TestEnv, token: &serde_json::Value, dir: &str) -> EnrollOptions {
    EnrollOptions {
        coordinator: env.agent_addr().to_string(),
        token: token["token"].as_str().expect("token").to_string(),
        ca_fingerprint: token["ca_fingerprint"].as_str().expect("fp").to_string(),
        state: StateDir::new(env.dir.path().join(dir)),
        force: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrollment_token_contract_and_enroll_command() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let t = env
        .admin(|c| {
            c.post("/api/v1/enrollment-tokens", &json!({"group": "servers", "max_uses": 3, "expires_in_hours": 2}))
        })
        .await
        .expect("create");
    for key in ["id", "token", "ca_fingerprint", "enroll_command", "expires_at", "uses_left", "group"] {
        assert!(!t[key].is_null(), "missing {key}: {t}");
    }
    assert_eq!(t["group"], "servers");
    assert_eq!(t["uses_left"], 3);
    assert_eq!(t["ca_fingerprint"].as_str(), Some(env.coordinator().ca_fingerprint.as_str()));
    let command = t["enroll_command"].as_str().expect("command");
    assert_eq!(
        command,
        format!(
            "picket-agent enroll --coordinator {} --token {} --ca-fingerprint {}",
            env.agent_addr(),
            t["token"].as_str().expect("token"),
            env.coordinator().ca_fingerprint
        )
    );
    let e = enroll(opts(&env, &t, "a")).await.expect("enroll");
    assert_eq!(e.group, "servers");
    let device = env.device(e.device_id).await;
    assert_eq!(device["group"], "servers");
    assert_eq!(device["status"], "offline");
    // The secret is never listed.
    let list = env.admin(|c| c.get("/api/v1/enrollment-tokens")).await.expect("list");
    assert!(!list.to_string().contains(t["token"].as_str().expect("token")));
    assert_eq!(list["items"][0]["uses_left"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrollment_failures_are_clear_and_consume_nothing() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let t = env.enrollment_token(1).await;

    // Wrong CA fingerprint: refused before the token is even sent.
    let mut wrong = opts(&env, &t, "wrong-fp");
    wrong.ca_fingerprint = "00".repeat(32);
    let err = enroll(wrong).await.expect_err("wrong fingerprint");
    assert!(matches!(err, EnrollError::FingerprintMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&env.coordinator().ca_fingerprint), "{err}");

    // Unknown token.
    let mut bad = opts(&env, &t, "bad-token");
    bad.token = "pkt_0000".into();
    assert!(matches!(enroll(bad).await, Err(EnrollError::Refused { reason: RefusalReason::TokenInvalid, .. })));

    // Unreachable coordinator.
    let mut gone = opts(&env, &t, "gone");
    gone.coordinator = "127.0.0.1:1".into();
    assert!(matches!(enroll(gone).await, Err(EnrollError::Unreachable { .. })));

    // The token is still good after all that; then used up.
    let first = enroll(opts(&env, &t, "ok")).await.expect("first use");
    let used_up = enroll(opts(&env, &t, "again")).await;
    assert!(matches!(used_up, Err(EnrollError::Refused { reason: RefusalReason::TokenUsedUp, .. })), "{used_up:?}");

    // Already enrolled needs --force; with it, a new identity replaces the old.
    let t2 = env.enrollment_token(2).await;
    let again = enroll(opts(&env, &t2, "ok")).await;
    assert!(matches!(again, Err(EnrollError::AlreadyEnrolled(_, id)) if id == first.device_id), "{again:?}");
    let mut forced = opts(&env, &t2, "ok");
    forced.force = true;
    let second = enroll(forced).await.expect("forced");
    assert_ne!(second.device_id, first.device_id);

    // A revoked token.
    let t3 = env.enrollment_token(5).await;
    let id = t3["id"].as_str().expect("id").to_string();
    env.admin(move |c| c.delete(&format!("/api/v1/enrollment-tokens/{id}"))).await.expect("revoke");
    let revoked = enroll(opts(&env, &t3, "revoked")).await;
    assert!(matches!(revoked, Err(EnrollError::Refused { reason: RefusalReason::TokenRevoked, .. })), "{revoked:?}");
}
