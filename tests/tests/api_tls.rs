//! HTTPS on the API listener, for real: the default certificate from the
//! coordinator's CA (and only that CA trusted by clients), HSTS, plain HTTP
//! only on loopback and only when asked, an operator's certificate
//! replaced on SIGHUP while open connections keep theirs.

use picket_coordinator::client::{Client, ClientError};
use picket_coordinator::config::Config;
use picket_e2e::{eventually, tls_connect, Db, TestEnv};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA of our own (not the coordinator's): its issuer and certificate PEM.
fn other_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("CA").pem();
    (Issuer::new(params, key), pem)
}

/// A server certificate for 127.0.0.1 from `ca`: (chain PEM, key PEM).
fn leaf(ca: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, ca).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

fn health(url: &str, ca_pem: &[u8]) -> Result<serde_json::Value, ClientError> {
    Client::with_ca(url, "", ca_pem)?.get("/health")
}

/// One keep-alive request on an open TLS connection; the response head
/// and body as text.
async fn get_health(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"status\":\"ok\"") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "the connection was closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_is_https_by_default_with_hsts_and_clients_trust_only_the_given_ca() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let url = env.api_url();
    assert!(url.starts_with("https://"));
    assert_eq!(env.coordinator().api_url(), url);

    let ca = env.ca_pem();
    let (status, hsts) = tokio::task::spawn_blocking({
        let (url, ca) = (url.clone(), ca.clone());
        move || {
            let client = Client::with_ca(&url, "", &ca).expect("client");
            let res = client.agent().get(&format!("{url}/health")).call().expect("health over HTTPS");
            let hsts = res.headers().get("strict-transport-security").map(|v| v.to_str().unwrap_or("").to_string());
            (res.status().as_u16(), hsts)
        }
    })
    .await
    .expect("task");
    assert_eq!(status, 200);
    assert_eq!(hsts.as_deref(), Some("max-age=63072000"));

    // Another CA, or none: refused, with what to do about it.
    let (_, foreign) = other_ca("Not the coordinator");
    let refused = tokio::task::spawn_blocking({
        let url = url.clone();
        move || (health(&url, foreign.as_bytes()), Client::new(&url, "").get("/health"))
    })
    .await
    .expect("task");
    match refused.0 {
        Err(ClientError::Unreachable { detail, .. }) => assert!(detail.contains("--ca-file"), "{detail}"),
        other => panic!("a server certificate from another CA was accepted: {other:?}"),
    }
    assert!(matches!(refused.1, Err(ClientError::Unreachable { .. })), "{:?}", refused.1);

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = format!("http://{}", env.coordinator().api_addr);
    let answer = tokio::task::spawn_blocking(move || Client::new(&plain, "").get("/health")).await.expect("task");
    assert!(answer.is_err(), "plain HTTP was answered on the HTTPS listener: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_is_refused_off_loopback_and_served_without_hsts_on_loopback() {
    for listen in ["0.0.0.0:7080", "10.1.2.3:7080", "[::]:7080"] {
        let mut config = Config { api_listen: listen.parse().expect("addr"), ..Config::default() };
        config.api_tls.insecure_http = true;
        let error = config.validate().expect_err(listen).to_string();
        assert!(error.contains("only on a loopback address"), "{listen}: {error}");
    }
    let env = TestEnv::start_with(&Db::Sqlite, |c| c.api_tls.insecure_http = true).await;
    assert_eq!(env.coordinator().api_scheme, "http");
    let url = env.coordinator().api_url();
    let (status, hsts) = tokio::task::spawn_blocking(move || {
        let client = Client::new(&url, "");
        let res = client.agent().get(&format!("{url}/health")).call().expect("health over HTTP");
        (res.status().as_u16(), res.headers().contains_key("strict-transport-security"))
    })
    .await
    .expect("task");
    assert_eq!((status, hsts), (200, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_certificate_is_served_and_replaced_on_sighup_while_open_connections_stay() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (certs.path().join("api.pem"), certs.path().join("api.key"));
    let (first_ca, first_ca_pem) = other_ca("First CA");
    let (second_ca, second_ca_pem) = other_ca("Second CA");
    let (cert, key) = leaf(&first_ca);
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let env = TestEnv::start_with(&Db::Sqlite, |c| {
        c.api_tls.cert = cert_path.clone();
        c.api_tls.key = key_path.clone();
    })
    .await;
    let url = env.api_url();
    let addr = env.coordinator().api_addr;
    let trusted = |ca: &str| {
        let (url, ca) = (url.clone(), ca.to_string());
        async move { tokio::task::spawn_blocking(move || health(&url, ca.as_bytes()).is_ok()).await.expect("task") }
    };
    assert!(trusted(&first_ca_pem).await, "the operator's certificate is served");
    assert!(!trusted(&String::from_utf8_lossy(&env.ca_pem())).await, "not one of the coordinator's CA");
    let mut open = tls_connect(addr, first_ca_pem.as_bytes()).await.expect("TLS with the first certificate");
    assert!(get_health(&mut open).await.starts_with("HTTP/1.1 200"));

    // (A file that cannot be read leaves the certificate in use: the unit
    // test `api::tls::tests::reload_replaces_the_certificate_…` shows it
    // without waiting on a signal's non-event.)
    let (cert, key) = leaf(&second_ca);
    std::fs::write(&key_path, key).expect("key");
    std::fs::write(&cert_path, cert).expect("cert");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    eventually!(10, "the new certificate is served", trusted(&second_ca_pem).await);
    assert!(!trusted(&first_ca_pem).await, "the old certificate is gone for new connections");
    assert!(get_health(&mut open).await.starts_with("HTTP/1.1 200"), "the open connection stays");
}

/// A body over the route's limit is answered 413, and a client that keeps
/// sending (as curl does after `Expect: 100-continue`) still reads that
/// answer: the server ends the connection with close_notify and FIN, and
/// reads and drops the rest for a moment before closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_gets_its_413_over_https() {
    let env = TestEnv::start(&Db::Sqlite).await;
    let ids: Vec<String> = (0..100_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let body = serde_json::json!({ "ids": ids, "comment": "too many" }).to_string().into_bytes();
    let sent = body.clone();
    match env.admin(move |c| c.post("/api/v1/actions/approve", &serde_json::from_slice(&sent).expect("json"))).await {
        Err(ClientError::Api { status: 413, code, .. }) => assert_eq!(code, "too_large"),
        other => panic!("a 4 MB body: {other:?}"),
    }

    let mut stream = env.api_tls_stream().await;
    let head = format!(
        "POST /api/v1/actions/approve HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        env.admin_token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.expect("100 Continue");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"), "{}", String::from_utf8_lossy(&buf[..n]));
    for chunk in body.chunks(64 * 1024) {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "the client kept sending and lost the answer: {answer:?}");
    assert_eq!(env.admin(|c| c.get("/health")).await.expect("still serving")["status"], "ok");
}
