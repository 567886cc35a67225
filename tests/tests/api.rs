//! The API's contract: auth and roles, errors, list shape, OpenAPI, audit.

use picket_coordinator::client::ClientError;
use picket_e2e::{Db, TestEnv};
use serde_json::json;

fn status(r: Result<serde_json::Value, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status().expect("an HTTP answer"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_errors_and_audit() {
    let env = TestEnv::start(&Db::Sqlite).await;
    assert_eq!(status(env.api("wrong", |c| c.get("/api/v1/devices")).await), 401);
    assert_eq!(status(env.api("", |c| c.get("/api/v1/devices")).await), 401);

    let viewer = env
        .admin(|c| c.post("/api/v1/api-tokens", &json!({"name": "watcher", "role": "viewer"})))
        .await
        .expect("viewer token");
    let viewer = viewer["token"].as_str().expect("secret").to_string();
    let listed = env.api(&viewer, |c| c.get("/api/v1/devices")).await.expect("viewer lists devices");
    assert_eq!(listed, json!({"items": [], "next_cursor": null}));
    let forbidden = env.api(&viewer, |c| c.post("/api/v1/enrollment-tokens", &json!({}))).await;
    match forbidden {
        Err(ClientError::Api { status: 403, code, message }) => {
            assert_eq!(code, "forbidden");
            assert!(message.contains("admin"), "{message}");
        }
        other => panic!("expected 403, got {other:?}"),
    }

    assert_eq!(status(env.admin(|c| c.post("/api/v1/api-tokens", &json!({"name": "x"}))).await), 400);
    assert_eq!(status(env.admin(|c| c.post("/api/v1/api-tokens", &json!({"name": "x", "role": "god"}))).await), 400);
    assert_eq!(
        status(env.admin(|c| c.post("/api/v1/api-tokens", &json!({"name": "watcher", "role": "viewer"}))).await),
        409
    );
    assert_eq!(status(env.admin(|c| c.post("/api/v1/enrollment-tokens", &json!({"max_uses": 0}))).await), 400);
    assert_eq!(status(env.admin(|c| c.get("/api/v1/devices/not-a-uuid")).await), 400);
    let missing = uuid::Uuid::new_v4();
    assert_eq!(status(env.admin(move |c| c.get(&format!("/api/v1/devices/{missing}"))).await), 404);
    assert_eq!(status(env.admin(|c| c.get("/api/v1/devices?limit=0")).await), 400);
    assert_eq!(status(env.admin(|c| c.get("/api/v1/devices?bogus=1")).await), 400);
    assert_eq!(status(env.admin(|c| c.get("/api/v1/nothing-here")).await), 404);

    let audit = env.admin(|c| c.get("/api/v1/audit")).await.expect("audit");
    let items = audit["items"].as_array().expect("items");
    // api-token creations (ok, 400, 400, 409) and the refused enrollment-token calls are all there.
    let token_calls = items.iter().filter(|e| e["target"] == "/api/v1/api-tokens").count();
    assert_eq!(token_calls, 4, "{audit}");
    assert!(items.iter().any(|e| e["actor"] == "watcher" && e["result"] == "403"), "{audit}");
    assert!(!audit.to_string().contains(&viewer), "secrets never reach the audit");
}

/// The document is generated from the handlers, every API operation in it
/// names its least role, and that role is what the coordinator enforces:
/// one role below is refused with 403, the role itself gets past the check
/// (to the handler's own answer), and a path no handler declared is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_has_its_role_in_the_spec_and_the_role_is_enforced() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let spec = env.api("", |c| c.get("/openapi.json")).await.expect("spec without auth");
    assert_eq!(spec["openapi"], "3.1.0");
    // Every reference resolves (a client generator or a fuzzer gives up on
    // a schema it cannot find).
    fn refs<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
        match v {
            serde_json::Value::Object(m) => {
                out.extend(m.get("$ref").and_then(|r| r.as_str()));
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("an outside reference {r}"));
        assert!(spec.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let roles = ["viewer", "responder", "approver", "admin"];
    let mut tokens = std::collections::HashMap::new();
    for role in roles {
        let body = json!({ "name": format!("{role}-token"), "role": role });
        let created = env.admin(move |c| c.post("/api/v1/api-tokens", &body)).await.expect("token");
        tokens.insert(role, created["token"].as_str().expect("secret").to_string());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut checked = 0;
    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            if !path.starts_with("/api/v1/") {
                assert_eq!(op["security"], json!([{}]), "{method} {path} outside the API is public by declaration");
                continue;
            }
            let role = op["security"][0]["bearer"][0].as_str().unwrap_or_else(|| panic!("{method} {path}: no role"));
            let rank = roles.iter().position(|r| *r == role).unwrap_or_else(|| panic!("{method} {path}: {role}"));
            let url = path.replace("{id}", &id).replace("{sha256}", &"0".repeat(64)).replace("{name}", "default");
            let env = &env;
            let call = |token: String| {
                let (method, url) = (method.clone(), url.clone());
                async move {
                    env.api(&token, move |c| match method.as_str() {
                        "get" => c.get(&url),
                        "post" => c.post(&url, &json!({})),
                        "delete" => c.delete(&url),
                        "patch" => c.patch(&url, &json!({})),
                        other => panic!("unexpected method {other}"),
                    })
                    .await
                }
            };
            if rank > 0 {
                match call(tokens[roles[rank - 1]].clone()).await {
                    Err(ClientError::Api { status: 403, message, .. }) => {
                        assert!(message.contains(&format!("needs the {role} role")), "{method} {path}: {message}")
                    }
                    other => panic!("{method} {path} with {}: {other:?}", roles[rank - 1]),
                }
            }
            match call(tokens[role].clone()).await {
                Err(ClientError::Api { status: 403, message, .. }) => panic!("{method} {path} as {role}: {message}"),
                Err(ClientError::Api { status: 404, message, .. }) => {
                    assert_ne!(message, "no such route", "{method} {path} is in the spec but not routed")
                }
                _ => {}
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} operations");
    let missing = env.admin(|c| c.get("/api/v1/no-such-thing")).await;
    assert!(matches!(missing, Err(ClientError::Api { status: 404, .. })), "{missing:?}");
    let health = env.api("", |c| c.get("/health")).await.expect("health");
    assert_eq!(health["status"], "ok");
}

/// Whether `stream` is closed by the server within 15 s, and not before 1 s.
async fn closed_after_the_timeout(mut stream: impl tokio::io::AsyncRead + Unpin) -> bool {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.is_ok() && started.elapsed() >= std::time::Duration::from_secs(1)
}

/// A client that never starts TLS, or trickles its request head
/// (slowloris) after the handshake, is closed after the header timeout,
/// and requests without a valid token leave no audit rows: they are
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_unauthenticated_clients_cost_nothing_lasting() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::start_with(&Db::Sqlite, |c| c.api_header_timeout_secs = 3).await;
    let addr = env.coordinator().api_addr;
    let idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    assert!(closed_after_the_timeout(idle).await, "a client that never starts TLS is closed after the timeout");
    let mut slow = env.api_tls_stream().await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.expect("partial head");
    assert!(closed_after_the_timeout(slow).await, "a trickling client is closed after the timeout");

    let before = env.admin(|c| c.get("/api/v1/audit")).await.expect("audit")["items"].as_array().map(Vec::len);
    for _ in 0..20 {
        let r = env.api("pka_not-a-token", |c| c.post("/api/v1/api-tokens", &serde_json::json!({}))).await;
        assert_eq!(status(r), 401);
    }
    let after = env.admin(|c| c.get("/api/v1/audit")).await.expect("audit")["items"].as_array().map(Vec::len);
    assert_eq!(before, after, "refused requests write no audit rows");
    let metrics = env.api("", |c| c.get_text("/metrics")).await.expect("metrics");
    assert!(metrics.contains("picket_api_unauthenticated_total 20"), "{metrics}");
}
