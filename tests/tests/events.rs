//! Every transition reaches the webhook and syslog sinks, in order, even when
//! the webhook receiver is down for a while and slow after that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use picket_coordinator::config::SyslogTarget;
use picket_coordinator::events::syslog::Transport;
use picket_e2e::{eventually, Db, Target, TestEnv};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<Value>>>,
}

async fn webhook(axum::extract::State(r): axum::extract::State<Receiver>, body: axum::Json<Value>) -> StatusCode {
    // Down for the first three deliveries, then slow.
    if r.calls.fetch_add(1, Ordering::SeqCst) < 3 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.events.lock().expect("lock").push(body.0);
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_and_syslog_receive_every_transition_in_order() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route("/hook", axum::routing::post(webhook)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let udp_addr = udp.local_addr().expect("addr").to_string();
    let udp_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let lines = udp_lines.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = udp.recv(&mut buf).await {
            lines.lock().expect("lock").push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("tcp");
    let tcp_addr = tcp.local_addr().expect("addr").to_string();
    let tcp_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let lines = tcp_lines.clone();
    tokio::spawn(async move {
        let Ok((stream, _)) = tcp.accept().await else { return };
        let mut reader = tokio::io::BufReader::new(stream);
        loop {
            // RFC 6587 octet counting: "LEN SP MSG"
            let mut len = Vec::new();
            if reader.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                break;
            }
            let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else { break };
            let mut msg = vec![0u8; n];
            if reader.read_exact(&mut msg).await.is_err() {
                break;
            }
            lines.lock().expect("lock").push(String::from_utf8_lossy(&msg).into_owned());
        }
    });

    let mut env = TestEnv::start_with(&Db::Sqlite, |c| {
        c.events.webhooks = vec![url.clone()];
        c.events.syslog = vec![
            SyslogTarget { address: udp_addr.clone(), transport: Transport::Udp },
            SyslogTarget { address: tcp_addr.clone(), transport: Transport::Tcp },
        ];
    })
    .await;
    let (device, dir) = env.enroll("a").await;

    // One action cancelled before it is delivered, one that runs.
    let cancel_me = env
        .admin(move |c| {
            c.post(
                &format!("/api/v1/devices/{device}/actions"),
                &json!({"kind": "kill_process", "params": {"pid": 999999}, "comment": "c"}),
            )
        })
        .await
        .expect("create");
    let cancel_id = cancel_me["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/actions/{cancel_id}/cancel");
    env.admin(move |c| c.post(&path, &json!({"comment": "no"}))).await.expect("cancel");
    let _agent = env.start_agent(device, &dir);
    let mut target = Target::sleeper();
    let body = json!({"kind": "kill_process", "params": {"pid": target.pid()}, "comment": "c"});
    let run = env.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("create");
    let run_id = run["id"].as_str().expect("id").to_string();
    eventually!(10, "ran", env.action_status(&run_id).await == "succeeded");
    assert!(target.exited());

    let expected = [
        (cancel_id.as_str(), "queued"),
        (cancel_id.as_str(), "cancelled"),
        (run_id.as_str(), "queued"),
        (run_id.as_str(), "sent"),
        (run_id.as_str(), "running"),
        (run_id.as_str(), "succeeded"),
    ];
    eventually!(
        30,
        "webhook got all six transitions despite the outage",
        receiver.events.lock().expect("lock").len() >= 6
    );
    let got: Vec<(String, String)> = receiver
        .events
        .lock()
        .expect("lock")
        .iter()
        .map(|e| (e["action_id"].as_str().unwrap_or("").to_string(), e["to"].as_str().unwrap_or("").to_string()))
        .collect();
    let want: Vec<(String, String)> = expected.iter().map(|(a, s)| (a.to_string(), s.to_string())).collect();
    assert_eq!(got, want);
    assert!(receiver.calls.load(Ordering::SeqCst) >= 9, "three refusals were retried");
    let ids: Vec<i64> =
        receiver.events.lock().expect("lock").iter().map(|e| e["event_id"].as_i64().unwrap_or(0)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");

    for (name, lines) in [("udp", &udp_lines), ("tcp", &tcp_lines)] {
        eventually!(10, format!("syslog over {name} got all six"), lines.lock().expect("lock").len() >= 6);
        let lines = lines.lock().expect("lock").clone();
        assert!(lines.iter().all(|l| l.starts_with("<134>1 ")), "{name}: {lines:?}");
        assert!(lines[5].contains(&run_id) && lines[5].contains("to=\"succeeded\""), "{name}: {}", lines[5]);
    }
}
