//! Agents enroll, show online, survive a coordinator restart, and a revoked
//! device is cut off — on SQLite, and on PostgreSQL when configured.

use picket_e2e::{databases, eventually, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_agents_enroll_show_online_and_reconnect_after_a_coordinator_restart() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let mut agents = Vec::new();
        for i in 0..3 {
            let (id, dir) = env.enroll(&format!("agent{i}")).await;
            agents.push(env.start_agent(id, &dir));
        }
        for a in &agents {
            eventually!(10, format!("{db:?}: agent {} online", a.id), env.device_status(a.id).await == "online");
        }
        let listed = env.admin(|c| c.get("/api/v1/devices")).await.expect("list");
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(3), "{listed}");
        assert!(listed["next_cursor"].is_null());
        let d = env.device(agents[0].id).await;
        assert_eq!(d["group"], "default");
        assert!(d["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{d}");
        assert!(d["last_seen"].is_string(), "{d}");

        env.stop_coordinator().await;
        env.restart_coordinator().await;
        for a in &agents {
            eventually!(
                30,
                format!("{db:?}: agent {} back online after restart", a.id),
                env.device_status(a.id).await == "online"
            );
        }
        for a in agents {
            a.stop.cancel();
            a.task.await.expect("agent task").expect("agent stops cleanly");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_device_is_cut_off_and_its_reconnects_are_refused() {
    for db in databases().await {
        let mut env = TestEnv::start(&db).await;
        let (victim, victim_dir) = env.enroll("victim").await;
        let (bystander, bystander_dir) = env.enroll("bystander").await;
        let _v = env.start_agent(victim, &victim_dir);
        let _b = env.start_agent(bystander, &bystander_dir);
        eventually!(10, "both online", env.sessions() == 2);

        let revoked =
            env.admin(move |c| c.post(&format!("/api/v1/devices/{victim}/revoke"), &serde_json::json!({}))).await;
        assert_eq!(revoked.expect("revoke")["status"], "revoked");
        eventually!(5, "victim session cut", env.coordinator().gateway.session(&victim).is_none());
        assert_eq!(env.device_status(victim).await, "revoked");

        // The agent's own reconnect, and a fresh handshake with its certificate, are refused.
        let outcome = picket_e2e::raw::try_session(env.agent_addr(), picket_e2e::raw::agent_config(&victim_dir)).await;
        assert!(matches!(outcome, picket_e2e::raw::Outcome::Failed(_)), "{outcome:?}");
        assert_eq!(env.device_status(bystander).await, "online");

        // Still refused after a restart: revocation is persistent.
        env.restart_coordinator().await;
        let outcome = picket_e2e::raw::try_session(env.agent_addr(), picket_e2e::raw::agent_config(&victim_dir)).await;
        assert!(matches!(outcome, picket_e2e::raw::Outcome::Failed(_)), "{outcome:?}");
        eventually!(30, "bystander back", env.device_status(bystander).await == "online");
        assert_eq!(env.device_status(victim).await, "revoked");

        let audit = env.admin(|c| c.get("/api/v1/audit")).await.expect("audit");
        let revokes: Vec<_> = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["target"].as_str().is_some_and(|t| t.ends_with("/revoke")))
            .collect();
        assert_eq!(revokes.len(), 1, "{audit}");
        assert_eq!(revokes[0]["actor"], "admin");
        assert_eq!(revokes[0]["result"], "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_session_of_a_device_replaces_the_first() {
    use picket_common::io::read_frame;
    use picket_common::proto::{CoordMsg, RefusalReason};
    use picket_e2e::raw;

    let env = TestEnv::start(&picket_e2e::Db::Sqlite).await;
    let (id, dir) = env.enroll("twin").await;
    let mut first = raw::connect(env.agent_addr(), raw::agent_config(&dir)).await.expect("first");
    picket_common::io::write_frame(&mut first, &raw::hello(), 1 << 20).await.expect("hello");
    let welcome = read_frame::<_, CoordMsg>(&mut first, 1 << 20).await.expect("read");
    assert!(matches!(welcome, Some(CoordMsg::Welcome(_))), "{welcome:?}");

    assert_eq!(raw::try_session(env.agent_addr(), raw::agent_config(&dir)).await, raw::Outcome::Welcome);
    let replaced = read_frame::<_, CoordMsg>(&mut first, 1 << 20).await.expect("read");
    match replaced {
        Some(CoordMsg::Refused(r)) => assert_eq!(r.reason, RefusalReason::Replaced),
        other => panic!("expected Replaced, got {other:?}"),
    }
    let _ = id;
}
