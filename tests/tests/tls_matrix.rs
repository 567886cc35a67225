//! Every way a client can fail to be a trusted device is refused at the
//! handshake or before any frame is processed, while real agents stay
//! connected; garbage and a 4 GiB length prefix close only that connection.

use std::time::Duration;

use picket_common::proto::RefusalReason;
use picket_e2e::raw::{self, Outcome};
use picket_e2e::{eventually, Db, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (TestEnv, Vec<picket_e2e::AgentHandle>, std::path::PathBuf, uuid::Uuid) {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let mut agents = Vec::new();
    for i in 0..2 {
        let (id, dir) = env.enroll(&format!("steady{i}")).await;
        agents.push(env.start_agent(id, &dir));
    }
    // A device whose identity the tests borrow for raw clients (not running).
    let (id, dir) = env.enroll("borrowed").await;
    eventually!(10, "steady agents online", env.sessions() == 2);
    (env, agents, dir, id)
}

async fn assert_steady(env: &TestEnv, agents: &[picket_e2e::AgentHandle]) {
    for a in agents {
        assert_eq!(env.device_status(a.id).await, "online", "agent {} dropped", a.id);
    }
    assert_eq!(env.sessions(), agents.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn untrusted_clients_are_refused_while_agents_stay_connected() {
    let (env, agents, borrowed_dir, borrowed_id) = setup().await;
    let addr = env.agent_addr();
    let data_dir = env.config.data_dir.clone();
    let ca = raw::ca_of(&data_dir);

    // The borrowed identity works: the matrix below fails for its own reasons.
    assert_eq!(raw::try_session(addr, raw::agent_config(&borrowed_dir)).await, Outcome::Welcome);

    // No client certificate: the handshake passes (enrollment needs it) but
    // Hello is refused before it is processed.
    assert_eq!(
        raw::try_session(addr, raw::anonymous_config(&ca)).await,
        Outcome::Refused(RefusalReason::CertificateRequired)
    );
    // A certificate for a real device id from another CA.
    let other = raw::try_session(addr, raw::other_ca_config(&ca, borrowed_id)).await;
    assert!(matches!(other, Outcome::Failed(_)), "other CA: {other:?}");
    // An expired certificate from the real CA for an active device.
    let expired = raw::try_session(addr, raw::expired_config(&data_dir, borrowed_id)).await;
    assert!(matches!(expired, Outcome::Failed(_)), "expired: {expired:?}");
    // TLS 1.2 only.
    let tls12 = raw::try_session(addr, raw::tls12_config(&borrowed_dir)).await;
    assert!(matches!(tls12, Outcome::Failed(_)), "tls1.2: {tls12:?}");
    // A revoked device's own certificate.
    env.admin(move |c| c.post(&format!("/api/v1/devices/{borrowed_id}/revoke"), &serde_json::json!({})))
        .await
        .expect("revoke");
    let revoked = raw::try_session(addr, raw::agent_config(&borrowed_dir)).await;
    assert!(matches!(revoked, Outcome::Failed(_)), "revoked: {revoked:?}");

    assert_steady(&env, &agents).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_a_4_gib_length_prefix_close_only_that_connection() {
    let (env, agents, borrowed_dir, _) = setup().await;
    let addr = env.agent_addr();

    // Garbage instead of a TLS ClientHello.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&[0xde; 4096]).await.expect("write");
    let mut alert = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut alert)).await;
    assert!(closed.is_ok(), "the coordinator must close a connection that sends garbage");
    assert!(alert.len() < 64, "at most a TLS alert comes back, got {} bytes", alert.len());

    // A 4 GiB length prefix inside an authenticated session, after Hello.
    let mut tls = raw::connect(addr, raw::agent_config(&borrowed_dir)).await.expect("tls");
    picket_common::io::write_frame(&mut tls, &raw::hello(), 1 << 20).await.expect("hello");
    let welcome = picket_common::io::read_frame::<_, picket_common::proto::CoordMsg>(&mut tls, 1 << 20).await;
    assert!(matches!(welcome, Ok(Some(picket_common::proto::CoordMsg::Welcome(_)))), "{welcome:?}");
    tls.write_all(&u32::MAX.to_be_bytes()).await.expect("prefix");
    tls.write_all(&[0u8; 1024]).await.expect("tail");
    tls.flush().await.expect("flush");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the coordinator must close the session");

    // Garbage frame body inside a session.
    let mut tls = raw::connect(addr, raw::agent_config(&borrowed_dir)).await.expect("tls");
    picket_common::io::write_frame(&mut tls, &raw::hello(), 1 << 20).await.expect("hello");
    let _ = picket_common::io::read_frame::<_, picket_common::proto::CoordMsg>(&mut tls, 1 << 20).await;
    tls.write_all(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await.expect("garbage");
    tls.flush().await.expect("flush");
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the coordinator must close the session");

    assert_steady(&env, &agents).await;
    // And the coordinator still enrolls and serves.
    let (id, dir) = env.enroll("after").await;
    assert_eq!(raw::try_session(addr, raw::agent_config(&dir)).await, Outcome::Welcome);
    let _ = id;
}
