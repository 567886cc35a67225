//! What a credential may do is decided by the credential, never by the
//! request: a responder who sends `"source":"api"` to skip the approval of
//! an offboard is refused; offboarding, forced actions and samples of
//! secret places wait for an approver whoever asks; two tokens of one
//! person are one person for the two-person rule; API tokens are listed,
//! revoked (from the very next request) and can expire; a revoked device
//! cannot enroll again with the token that enrolled it until an admin
//! resumes that token. Real coordinator, real agent, real HTTP.

use picket_coordinator::client::ClientError;
use picket_e2e::{eventually, Db, TestEnv};
use serde_json::{json, Value};
use uuid::Uuid;

async fn token_for(env: &TestEnv, body: Value) -> String {
    let t = env.admin(move |c| c.post("/api/v1/api-tokens", &body)).await.expect("create API token");
    t["token"].as_str().expect("secret").to_string()
}

async fn request(env: &TestEnv, token: &str, device: Uuid, body: Value) -> Result<Value, ClientError> {
    env.api(token, move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await
}

fn status_of(r: &Result<Value, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ClientError::Api { status, .. }) => *status,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_responder_cannot_pick_the_source_and_dangerous_actions_always_wait_for_an_approver() {
    for db in picket_e2e::databases().await {
        // No kind listed for approval: only the rules that always hold apply.
        let mut env = TestEnv::start_with(&db, |c| c.actions.approval_required_kinds.clear()).await;
        let (device, dir) = env.enroll("target").await;
        let _agent = env.start_agent(device, &dir);
        eventually!(10, "online", env.device_status(device).await == "online");
        let responder = env.token("rita", "responder").await;
        let integration = token_for(&env, json!({ "name": "soar", "role": "responder", "kind": "integration" })).await;

        // The attack: claim to be an integration so the policy is skipped.
        let sneaky = json!({ "kind": "offboard", "params": {}, "comment": "x", "source": "api" });
        let r = request(&env, &responder, device, sneaky).await;
        assert_eq!(status_of(&r), 400, "{r:?}");
        assert!(format!("{r:?}").contains("comes from the credential"), "{r:?}");

        for (who, token) in [("person", &responder), ("integration", &integration)] {
            let a = request(&env, token, device, json!({ "kind": "offboard", "params": {}, "comment": "gone" }))
                .await
                .expect("offboard requested");
            assert_eq!(a["status"], "pending_approval", "{who}: {a}");
            let want = if who == "person" { "manual_device_action" } else { "api" };
            assert_eq!(a["source"], want, "{who}: the source comes from the token");
            // The same request again is the same pending action.
            let id = a["id"].as_str().expect("id").to_string();
            env.admin(move |c| c.post(&format!("/api/v1/actions/{id}/reject"), &json!({ "comment": "no" })))
                .await
                .expect("reject");
        }
        let forced = json!({ "kind": "delete_file", "params": { "path": "/tmp/x", "force": true }, "comment": "f" });
        let a = request(&env, &responder, device, forced).await.expect("forced");
        assert_eq!(a["status"], "pending_approval", "{a}");
        assert_eq!(a["source"], "live_response");
        let secret = json!({ "kind": "request_sample", "params": { "path": "/etc/passwd" }, "comment": "s" });
        assert_eq!(request(&env, &integration, device, secret).await.expect("sample")["status"], "pending_approval");
        let plain = json!({ "kind": "request_sample", "params": { "path": "/tmp/nothing-here" }, "comment": "s" });
        let a = request(&env, &responder, device, plain).await.expect("sample");
        assert_ne!(a["status"], "pending_approval", "a sample of a temp file runs at once: {a}");
        assert_eq!(env.device_status(device).await, "online", "nothing offboarded the device");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tokens_of_one_person_are_one_person_for_the_two_person_rule() {
    for db in picket_e2e::databases().await {
        let env = TestEnv::start(&db).await;
        let (device, _dir) = env.enroll("target").await;
        let alice = token_for(&env, json!({ "name": "alice", "role": "responder" })).await;
        let alice_too = token_for(&env, json!({ "name": "alice-laptop", "user": "alice", "role": "approver" })).await;
        let bob = env.token("bob", "approver").await;
        let a = request(&env, &alice, device, json!({ "kind": "offboard", "params": {}, "comment": "gone" }))
            .await
            .expect("requested");
        let id = a["id"].as_str().expect("id").to_string();
        let i = id.clone();
        let own = env.api(&alice_too, move |c| c.post(&format!("/api/v1/actions/{i}/approve"), &json!({}))).await;
        assert_eq!(status_of(&own), 403, "alice approving with her second token: {own:?}");
        let i = id.clone();
        let many = env
            .api(&alice_too, move |c| c.post("/api/v1/actions/approve", &json!({ "ids": [i], "comment": "ok" })))
            .await
            .expect("bulk answers per id");
        assert_eq!(many["items"][0]["ok"], false, "{many}");
        assert!(many["items"][0]["error"].as_str().is_some_and(|e| e.contains("two-person")), "{many}");
        assert_eq!(env.action_status(&id).await, "pending_approval");
        let i = id.clone();
        env.api(&bob, move |c| c.post(&format!("/api/v1/actions/{i}/approve"), &json!({ "comment": "checked" })))
            .await
            .expect("bob approves");
        assert_ne!(env.action_status(&id).await, "pending_approval");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_tokens_are_listed_without_secrets_and_revocation_counts_from_the_next_request() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let t = env
        .admin(|c| c.post("/api/v1/api-tokens", &json!({ "name": "ci", "role": "viewer", "expires_in_days": 30 })))
        .await
        .expect("create");
    let (id, secret) = (t["id"].as_str().expect("id").to_string(), t["token"].as_str().expect("secret").to_string());
    assert!(t["expires_at"].is_string());
    env.api(&secret, |c| c.get("/api/v1/devices")).await.expect("works");
    let listed = env.admin(|c| c.get("/api/v1/api-tokens")).await.expect("list");
    let mine = listed["items"].as_array().expect("items").iter().find(|i| i["id"] == id.as_str()).cloned();
    let mine = mine.expect("listed");
    assert_eq!((mine["state"].as_str(), mine["user"].as_str()), (Some("active"), Some("ci")));
    assert!(!listed.to_string().contains(&secret) && !listed.to_string().contains("pka_"), "no secrets listed");
    let i = id.clone();
    let r = env.admin(move |c| c.delete(&format!("/api/v1/api-tokens/{i}"))).await.expect("revoke");
    assert_eq!(r["state"], "revoked");
    let after = env.api(&secret, |c| c.get("/api/v1/devices")).await;
    assert_eq!(status_of(&after), 401, "refused on the very next request");
    // The last live admin token stays.
    let listed = env.admin(|c| c.get("/api/v1/api-tokens")).await.expect("list");
    let admin_id = listed["items"].as_array().expect("items").iter().find(|i| i["role"] == "admin").expect("admin")
        ["id"]
        .as_str()
        .expect("id")
        .to_string();
    let last = env.admin(move |c| c.delete(&format!("/api/v1/api-tokens/{admin_id}"))).await;
    assert_eq!(status_of(&last), 409, "{last:?}");
    let bad =
        env.admin(|c| c.post("/api/v1/api-tokens", &json!({ "name": "x", "role": "viewer", "expires_in_days": 0 })));
    assert_eq!(status_of(&bad.await), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_device_cannot_enroll_again_with_its_still_valid_token_until_an_admin_resumes_it() {
    for db in picket_e2e::databases().await {
        let env = TestEnv::start(&db).await;
        let token = env.enrollment_token(10).await;
        let device = env.enroll_with("stolen", &token).await.expect("first enrollment");
        let r = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/revoke"), &json!({}))).await;
        let r = r.expect("revoke");
        assert_eq!(r["enrollment_token_suspended"], token["id"], "{r}");
        // Whoever holds the stolen machine re-enrolls with the token it used.
        let again = env.enroll_with("stolen-again", &token).await;
        let err = again.expect_err("refused");
        assert!(err.to_string().contains("suspended"), "{err}");
        let id = token["id"].as_str().expect("id").to_string();
        let listed = env.admin(|c| c.get("/api/v1/enrollment-tokens")).await.expect("list");
        let t = listed["items"].as_array().expect("items").iter().find(|t| t["id"] == id.as_str()).cloned();
        let t = t.expect("listed");
        assert_eq!(t["state"], "suspended");
        assert_eq!(t["uses_left"], 9, "the refused attempt used nothing");
        env.admin(move |c| c.post(&format!("/api/v1/enrollment-tokens/{id}/resume"), &json!({})))
            .await
            .expect("resume");
        env.enroll_with("replacement", &token).await.expect("enrolls once resumed");
    }
}
