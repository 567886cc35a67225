//! Scale-out, first part (issue 17 item 1): one coordinator per data dir —
//! a second is refused with a clear error instead of corrupting it — and
//! replicas on one PostgreSQL can start at the same moment: migrations and
//! first-start bootstrap happen once.

use picket_coordinator::{Config, Coordinator};
use picket_e2e::{coordinator_binary, Db, TestEnv};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_coordinator_on_the_same_data_dir_is_refused_and_the_first_serves_on() {
    let mut env = TestEnv::start(&Db::Sqlite).await;
    let data_dir = env.config.data_dir.clone();
    // In process, on other ports.
    let mut config = env.config.clone();
    config.agent_listen = "127.0.0.1:0".parse().expect("addr");
    config.api_listen = "127.0.0.1:0".parse().expect("addr");
    let refused = Coordinator::start(config, CancellationToken::new()).await.err().expect("refused").to_string();
    assert!(refused.contains("in use by another coordinator"), "{refused}");
    assert!(refused.contains(&format!("(pid {})", std::process::id())), "names the holder: {refused}");
    // As an operator would start it: exit non-zero, the reason on stderr.
    let out = std::process::Command::new(coordinator_binary())
        .args(["serve", "--agent-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("picket-coordinator");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("in use by another coordinator"), "{said}");
    // The first never noticed.
    env.admin(|c| c.get("/api/v1/devices")).await.expect("the first still serves");
    // Stopped, its data dir is free again.
    env.restart_coordinator().await;
    env.admin(|c| c.get("/api/v1/devices")).await.expect("serves after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_postgres_start_together_and_bootstrap_once() {
    let Some(Db::Postgres(url)) = picket_e2e::databases().await.into_iter().find(|d| matches!(d, Db::Postgres(_)))
    else {
        eprintln!("skipped: PICKET_TEST_POSTGRES_URL not set");
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let shutdown = CancellationToken::new();
    let starts: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let config = Config {
                data_dir: dir.path().join("coordinator"),
                agent_listen: "127.0.0.1:0".parse().expect("addr"),
                api_listen: "127.0.0.1:0".parse().expect("addr"),
                database_url: url.clone(),
                ..Config::default()
            };
            tokio::spawn(Coordinator::start(config, shutdown.clone()))
        })
        .collect();
    let mut replicas = Vec::new();
    for start in starts {
        replicas.push(start.await.expect("start task").unwrap_or_else(|e| panic!("a replica failed to start: {e}")));
    }
    let store = &replicas[0].store;
    let applied = store.migrations_applied().await.expect("migrations");
    let mut versions = applied.clone();
    versions.dedup();
    assert_eq!(applied, versions, "each migration applied once");
    assert_eq!(store.user_count().await.expect("users"), 1, "one first admin user, not one per replica");
    assert_eq!(store.api_token_count().await.expect("tokens"), 1, "one first admin token");
    shutdown.cancel();
    for r in replicas {
        r.join().await;
    }
}
