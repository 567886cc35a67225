//! Network isolation for real: nftables inside network namespaces this test
//! creates (device, coordinator, another host on a bridge). Nothing touches
//! the host's own network: every socket, nft call and address lives in the
//! test's namespaces, and a guard checks that before anything is isolated.
//! Needs root, `ip` and `nft` (CI installs nftables); skips elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use picket_agent::enroll::{enroll, EnrollOptions};
use picket_agent::state::StateDir;
use picket_coordinator::client::Client;
use picket_coordinator::Config;
use picket_e2e::netns::{can_run, ok, on, rand_id, sh, start_coordinator, thread_netns, wait, Netns};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

fn tcp_reaches(rt: &Runtime, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("addr");
    on(rt, async move {
        matches!(
            tokio::time::timeout(Duration::from_millis(700), tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        )
    })
}

fn listen(rt: &Runtime, addr: &str) {
    let addr: SocketAddr = addr.parse().expect("addr");
    on(rt, async move {
        let l = tokio::net::TcpListener::bind(addr).await.expect("listen");
        tokio::spawn(async move { while l.accept().await.is_ok() {} });
    });
}

fn api(rt: &Runtime, url: &str, ca: &[u8], token: &str, path: &str, body: Option<Value>) -> Value {
    let (url, ca, token, path) = (url.to_string(), ca.to_vec(), token.to_string(), path.to_string());
    let label = path.clone();
    on(rt, async move {
        tokio::task::spawn_blocking(move || {
            let c = Client::with_ca(&url, &token, &ca).expect("client");
            match body {
                Some(b) => c.post(&path, &b),
                None => c.get(&path),
            }
        })
        .await
        .expect("blocking")
        .unwrap_or_else(|e| panic!("{label}: {e}"))
    })
}

fn ping(ns: &Netns, target: &str) -> bool {
    let v6 = if target.contains(':') { "-6" } else { "-4" };
    ok(&["ip", "netns", "exec", &ns.0, "ping", v6, "-c", "1", "-W", "1", target])
}

#[test]
fn isolation_cuts_everything_but_the_coordinator_survives_restart_and_releases_cleanly() {
    if !can_run("the isolation test") {
        return;
    }
    picket_e2e::init_logs();
    let id = rand_id();
    let (coord, dev, other) = (Netns::new("c", &id), Netns::new("d", &id), Netns::new("o", &id));
    sh(&["ip", "-n", &coord.0, "link", "add", "br0", "type", "bridge"]);
    sh(&["ip", "-n", &coord.0, "link", "set", "br0", "up"]);
    sh(&["ip", "-n", &coord.0, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
    sh(&["ip", "-n", &coord.0, "addr", "add", "fd77::1/64", "dev", "br0", "nodad"]);
    for (ns, v4, v6, port) in
        [(&dev, "10.77.0.2/24", "fd77::2/64", "dport"), (&other, "10.77.0.3/24", "fd77::3/64", "oport")]
    {
        sh(&["ip", "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", &coord.0]);
        sh(&["ip", "-n", &coord.0, "link", "set", port, "master", "br0", "up"]);
        sh(&["ip", "-n", &ns.0, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns.0, "addr", "add", v4, "dev", "eth0"]);
        sh(&["ip", "-n", &ns.0, "addr", "add", v6, "dev", "eth0", "nodad"]);
    }
    let (c_rt, d_rt, o_rt) = (coord.runtime(), dev.runtime(), other.runtime());
    // The guard: every thread that will touch the network is in its namespace.
    assert_eq!(thread_netns(&c_rt), (coord.inode(), coord.inode()));
    assert_eq!(thread_netns(&d_rt), (dev.inode(), dev.inode()));
    assert_eq!(thread_netns(&o_rt), (other.inode(), other.inode()));

    // An admin's own table on the device, which must never be touched.
    sh(&["ip", "netns", "exec", &dev.0, "nft", "add", "table", "inet", "admin"]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &dev.0,
        "nft",
        "add",
        "chain",
        "inet",
        "admin",
        "keep",
        "{ type filter hook input priority 10; policy accept; }",
    ]);
    let admin_table = || sh(&["ip", "netns", "exec", &dev.0, "nft", "list", "table", "inet", "admin"]);
    let admin_before = admin_table();

    for addr in ["0.0.0.0:8080", "0.0.0.0:8081"] {
        listen(&o_rt, addr);
    }
    listen(&o_rt, "[fd77::3]:8080");
    listen(&d_rt, "0.0.0.0:9090");
    let reachable = |label: &str, expect: bool| {
        assert_eq!(tcp_reaches(&d_rt, "10.77.0.3:8080"), expect, "{label}: device → other (TCP v4)");
        assert_eq!(tcp_reaches(&d_rt, "[fd77::3]:8080"), expect, "{label}: device → other (TCP v6)");
        assert_eq!(tcp_reaches(&o_rt, "10.77.0.2:9090"), expect, "{label}: other → device (TCP v4)");
        assert_eq!(ping(&dev, "10.77.0.3"), expect, "{label}: device → other (ping v4)");
        assert_eq!(ping(&dev, "fd77::3"), expect, "{label}: device → other (ping v6)");
    };
    reachable("before", true);

    // Coordinator in its namespace; agent in the device's.
    let data = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let config = Config {
        data_dir: data.path().join("coordinator"),
        agent_listen: "10.77.0.1:7443".parse().expect("addr"),
        api_listen: "127.0.0.1:7080".parse().expect("addr"),
        heartbeat_secs: 5,
        ..Config::default()
    };
    let (url, token, ca) = start_coordinator(&c_rt, config, shutdown.clone());
    let t = api(&c_rt, &url, &ca, &token, "/api/v1/enrollment-tokens", Some(json!({})));
    let state = data.path().join("agent");
    let (tok, fp, st) = (
        t["token"].as_str().expect("t").to_string(),
        t["ca_fingerprint"].as_str().expect("fp").to_string(),
        state.clone(),
    );
    let device = on(&d_rt, async move {
        enroll(EnrollOptions {
            coordinator: "10.77.0.1:7443".into(),
            token: tok,
            ca_fingerprint: fp,
            state: StateDir::new(st),
            force: false,
        })
        .await
        .expect("enroll")
        .device_id
    });
    let start_agent = |rt: &Runtime| {
        let stop = CancellationToken::new();
        let config = picket_e2e::agent_config(&state);
        let s = stop.clone();
        // `Runtime::spawn` runs the agent on the namespace's workers.
        let task = rt.spawn(picket_agent::session::run(config, s));
        (stop, task)
    };
    let (stop, task) = start_agent(&d_rt);
    let device_json = |c_rt: &Runtime| api(c_rt, &url, &ca, &token, &format!("/api/v1/devices/{device}"), None);
    wait("agent online", 20, || device_json(&c_rt)["status"] == "online");

    let act = |body: Value| api(&c_rt, &url, &ca, &token, &format!("/api/v1/devices/{device}/actions"), Some(body));
    let status = |id: &str| {
        api(&c_rt, &url, &ca, &token, &format!("/api/v1/actions/{id}"), None)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // Full isolation.
    let iso = act(json!({ "kind": "isolate", "params": { "mode": "full" }, "comment": "contain" }));
    let iso_id = iso["id"].as_str().expect("id").to_string();
    wait("isolate succeeded", 20, || status(&iso_id) == "succeeded");
    let result = api(&c_rt, &url, &ca, &token, &format!("/api/v1/actions/{iso_id}"), None)["result"]["output"].clone();
    assert!(result["rules"].as_str().is_some_and(|r| r.contains("policy drop")), "{result}");
    assert!(!sh(&["nft", "list", "tables"]).contains("inet picket"), "the host's own ruleset was never touched");
    reachable("isolated", false);
    let seen = device_json(&c_rt)["last_seen"].clone();
    wait("heartbeats continue while isolated", 30, || device_json(&c_rt)["last_seen"] != seen);
    assert_eq!(device_json(&c_rt)["status"], "online");
    assert_eq!(admin_table(), admin_before);

    // Restart the agent: isolation is re-applied before it connects.
    stop.cancel();
    on(&d_rt, async move { task.await.expect("join").expect("agent stops") });
    sh(&["ip", "netns", "exec", &dev.0, "nft", "delete", "table", "inet", "picket"]);
    let (stop, task) = start_agent(&d_rt);
    wait("agent back online", 30, || device_json(&c_rt)["status"] == "online");
    reachable("isolated after restart", false);

    // Release (as the undo of the isolation).
    let rel =
        api(&c_rt, &url, &ca, &token, &format!("/api/v1/actions/{iso_id}/undo"), Some(json!({ "comment": "clean" })));
    let rel_id = rel["id"].as_str().expect("id").to_string();
    assert_eq!(rel["kind"], "release_isolation");
    wait("release succeeded", 20, || status(&rel_id) == "succeeded");
    reachable("released", true);
    assert!(!sh(&["ip", "netns", "exec", &dev.0, "nft", "list", "tables"]).contains("inet picket"));
    assert_eq!(admin_table(), admin_before);

    // Selective: one excluded CIDR + port stays reachable, nothing else.
    let sel = act(json!({ "kind": "isolate", "params": { "mode": "selective", "exclusions": [
        { "cidr": "10.77.0.3/32", "protocol": "tcp", "port": 8081, "direction": "outbound" }
    ] }, "comment": "keep the patch server" }));
    let sel_id = sel["id"].as_str().expect("id").to_string();
    wait("selective isolate succeeded", 20, || status(&sel_id) == "succeeded");
    assert!(tcp_reaches(&d_rt, "10.77.0.3:8081"), "the exclusion stays reachable");
    assert!(!tcp_reaches(&d_rt, "10.77.0.3:8080"), "another port is cut");
    assert!(!tcp_reaches(&o_rt, "10.77.0.2:9090"), "inbound is cut");
    let rel = act(json!({ "kind": "release_isolation", "params": {}, "comment": "done" }));
    let rel_id = rel["id"].as_str().expect("id").to_string();
    wait("release succeeded", 20, || status(&rel_id) == "succeeded");
    reachable("released again", true);
    assert_eq!(admin_table(), admin_before);

    stop.cancel();
    on(&d_rt, async move { task.await.expect("join").expect("agent stops") });
    shutdown.cancel();
    drop((c_rt, d_rt, o_rt));
}
