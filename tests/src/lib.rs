//! Harness for end-to-end tests: a real coordinator (in-process, real
//! listeners on 127.0.0.1 with OS-chosen ports, real SQLite or PostgreSQL)
//! and real agents (the agent library's own `enroll` and `session::run`).
//!
//! - [`TestEnv`]: one coordinator with its data dir, restartable on the same ports.
//! - [`eventually!`]: poll a condition instead of sleeping.
//! - [`raw`]: hand-made TLS clients for the negative cases.
//! - [`attacker`]: the unprivileged local user the security tests play.
//! - [`web`]: the console as a browser speaks to it.

pub mod attacker;
pub mod browser;
pub mod dovecot;
pub mod netns;
pub mod raw;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_agent::enroll::{enroll, EnrollOptions};
use picket_agent::state::StateDir;
use picket_agent::AgentConfig;
use picket_coordinator::client::{Client, ClientError};
use picket_coordinator::{Config, Coordinator};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Poll `$cond` (an expression, may `.await`) every 50 ms until it is true,
/// failing the test after `$secs` seconds with `$what`.
#[macro_export]
macro_rules! eventually {
    ($secs:expr, $what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {} s waiting for: {}", $secs, $what);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Which database a test environment uses.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite,
    Postgres(String),
}

/// SQLite always; PostgreSQL too when `PICKET_TEST_POSTGRES_URL` is set
/// (CI sets it and fails rather than skips when the server is missing).
pub async fn databases() -> Vec<Db> {
    let mut dbs = vec![Db::Sqlite];
    if let Ok(base) = std::env::var("PICKET_TEST_POSTGRES_URL") {
        let url = picket_coordinator::testdb::fresh_postgres_database(&base)
            .await
            .expect("PICKET_TEST_POSTGRES_URL is set but PostgreSQL is unreachable");
        dbs.push(Db::Postgres(url));
    } else {
        eprintln!("PICKET_TEST_POSTGRES_URL not set: PostgreSQL variant skipped");
    }
    dbs
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The `picket-agent` binary of this build (the coordinator's rule checker).
pub fn agent_binary() -> PathBuf {
    binary("picket-agent")
}

/// The `picket-linkwrap` Sieve filter of this build.
pub fn linkwrap_binary() -> PathBuf {
    binary("picket-linkwrap")
}

/// The `picket-coordinator` binary of this build.
pub fn coordinator_binary() -> PathBuf {
    binary("picket-coordinator")
}

/// The `picketctl` binary of this build.
pub fn picketctl_binary() -> PathBuf {
    binary("picketctl")
}

/// `picketctl` as an operator runs it against a test coordinator: its CA
/// from a file, a token, and no configuration of the host's own.
pub struct Ctl {
    server: String,
    ca: tempfile::NamedTempFile,
    token: String,
}

impl Ctl {
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(picketctl_binary());
        c.env_remove("PICKET_TOKEN_FILE")
            .env_remove("PICKET_CA_FINGERPRINT")
            .env("PICKET_SERVER", &self.server)
            .env("PICKET_CA_FILE", self.ca.path())
            .env("PICKET_TOKEN", &self.token)
            .env("PICKET_CONFIG_DIR", "/nonexistent/picket-test-config");
        c
    }

    /// Run it with `args` (blocking: from async tests, inside
    /// `block_in_place`).
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().expect("run picketctl")
    }
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(bin.is_file(), "{} not built (cargo builds it with the workspace's tests)", bin.display());
    bin
}

/// The EICAR test file, decoded from `../shared/corpus/eicar/eicar.com.b64`
/// at test time (the live string is never committed).
pub fn eicar() -> Vec<u8> {
    let b64 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/eicar/eicar.com.b64");
    let out = std::process::Command::new("base64").arg("-d").arg(&b64).output().expect("base64");
    assert!(out.status.success(), "base64 -d {}", b64.display());
    out.stdout
}

/// An agent configuration for tests: 2 s heartbeats, no local rule
/// directories, real-time protection off (it would watch the host's /tmp).
pub fn agent_config(state_dir: &Path) -> AgentConfig {
    let mut config = AgentConfig { state_dir: state_dir.to_path_buf(), heartbeat_secs: 2, ..AgentConfig::default() };
    config.realtime.enabled = false;
    config.rule_dirs.clear();
    config
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub coordinator: Option<Coordinator>,
    shutdown: CancellationToken,
    pub admin_token: String,
    agents: Vec<CancellationToken>,
    /// One API client per token, so calls reuse their HTTPS connections.
    clients: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Client>>>,
}

/// A running agent started by [`TestEnv::start_agent`].
pub struct AgentHandle {
    pub id: Uuid,
    pub state_dir: PathBuf,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), picket_agent::session::RunError>>,
}

impl TestEnv {
    pub async fn start(db: &Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Start with a configuration adjusted by `tweak`.
    pub async fn start_with(db: &Db, tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("coordinator"),
            agent_listen: "127.0.0.1:0".parse().expect("addr"),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: match db {
                Db::Sqlite => String::new(),
                Db::Postgres(url) => url.clone(),
            },
            heartbeat_secs: 5,
            ..Config::default()
        };
        config.rules.checker = agent_binary();
        // Alerts in other tests must not start investigations that act on
        // their files; the investigation tests turn this on.
        config.investigations.automatic = false;
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let coordinator = Coordinator::start(config.clone(), shutdown.clone()).await.expect("coordinator starts");
        let admin_token =
            std::fs::read_to_string(&coordinator.admin_token_path).expect("admin token").trim().to_string();
        // Pin the ports so a restart comes back where the agents look.
        config.agent_listen = coordinator.agent_addr;
        config.api_listen = coordinator.api_addr;
        Self {
            dir,
            config,
            coordinator: Some(coordinator),
            shutdown,
            admin_token,
            agents: Vec::new(),
            clients: Default::default(),
        }
    }

    pub fn coordinator(&self) -> &Coordinator {
        self.coordinator.as_ref().expect("coordinator running")
    }

    pub fn agent_addr(&self) -> SocketAddr {
        self.config.agent_listen
    }

    /// The API's HTTPS base URL.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.config.api_listen)
    }

    /// The coordinator's CA (PEM): what API clients trust.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.config.data_dir.join("pki/ca.pem")).expect("the coordinator's CA")
    }

    /// `picketctl` with a new API token `name` of `role`.
    pub async fn ctl(&self, name: &str, role: &str) -> Ctl {
        let ca = tempfile::NamedTempFile::new().expect("ca file");
        std::fs::write(ca.path(), self.ca_pem()).expect("write ca");
        Ctl { server: self.api_url(), ca, token: self.token(name, role).await }
    }

    /// A raw TLS connection to the API, trusting the coordinator's CA.
    pub async fn api_tls_stream(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        tls_connect(self.config.api_listen, &self.ca_pem()).await.expect("TLS to the API")
    }

    /// An API client that trusts the coordinator's CA.
    pub fn client(&self, token: &str) -> Client {
        Client::with_ca(&self.api_url(), token, &self.ca_pem()).expect("API client")
    }

    /// A browser-like client of the console.
    /// A browser-like client of the click listener (wrapped links).
    pub fn click(&self) -> web::Web {
        let url = self.coordinator.as_ref().and_then(|c| c.click_url.clone()).expect("a click listener");
        web::Web::new(&url, self.client("").tls_config())
    }

    pub fn web(&self) -> web::Web {
        web::Web::new(&self.api_url(), self.client("").tls_config())
    }

    /// The first admin's password, as the first start wrote it (checked 0600).
    pub fn admin_password(&self) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.config.data_dir.join("admin.password");
        let mode = std::fs::metadata(&path).expect("admin.password").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        std::fs::read_to_string(&path).expect("admin.password").trim().to_string()
    }

    /// Stop the coordinator (agents keep running and retrying).
    pub async fn stop_coordinator(&mut self) {
        // Their pooled connections are to this coordinator.
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.shutdown.cancel();
        if let Some(c) = self.coordinator.take() {
            c.join().await;
        }
    }

    /// Start it again on the same data dir and ports.
    pub async fn restart_coordinator(&mut self) {
        self.stop_coordinator().await;
        self.shutdown = CancellationToken::new();
        let c = Coordinator::start(self.config.clone(), self.shutdown.clone()).await.expect("coordinator restarts");
        self.coordinator = Some(c);
    }

    /// Call the API with a token, off the async workers.
    pub async fn api<T, F>(&self, token: &str, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(&Client) -> Result<T, ClientError> + Send + 'static,
        T: Send + 'static,
    {
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            clients.entry(token.to_string()).or_insert_with(|| std::sync::Arc::new(self.client(token))).clone()
        };
        tokio::task::spawn_blocking(move || f(&client)).await.expect("API call task")
    }

    pub async fn admin<T, F>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(&Client) -> Result<T, ClientError> + Send + 'static,
        T: Send + 'static,
    {
        self.api(&self.admin_token.clone(), f).await
    }

    /// Create an enrollment token; returns the API's JSON.
    pub async fn enrollment_token(&self, max_uses: u32) -> Value {
        self.admin(move |c| c.post("/api/v1/enrollment-tokens", &json!({ "max_uses": max_uses })))
            .await
            .expect("create enrollment token")
    }

    /// Enroll a new agent state dir named `name` through the real protocol.
    pub async fn enroll(&self, name: &str) -> (Uuid, PathBuf) {
        let token = self.enrollment_token(1).await;
        let id = self.enroll_with(name, &token).await.expect("enrollment succeeds");
        (id, self.dir.path().join(name))
    }

    /// Enroll the state dir `name` with `token` (the API's JSON of an
    /// enrollment token); the device id, or why enrollment failed.
    pub async fn enroll_with(&self, name: &str, token: &Value) -> Result<Uuid, picket_agent::enroll::EnrollError> {
        let e = enroll(EnrollOptions {
            coordinator: self.agent_addr().to_string(),
            token: token["token"].as_str().expect("token").to_string(),
            ca_fingerprint: token["ca_fingerprint"].as_str().expect("fingerprint").to_string(),
            state: StateDir::new(self.dir.path().join(name)),
            force: false,
        })
        .await?;
        Ok(e.device_id)
    }

    /// Run an agent on `state_dir` in this process (real-time protection
    /// off: it would watch the host's /tmp).
    pub fn start_agent(&mut self, id: Uuid, state_dir: &Path) -> AgentHandle {
        self.start_agent_with(id, state_dir, |_| {})
    }

    /// Run an agent with its configuration adjusted by `tweak`.
    pub fn start_agent_with(
        &mut self,
        id: Uuid,
        state_dir: &Path,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> AgentHandle {
        let stop = CancellationToken::new();
        let mut config = agent_config(state_dir);
        tweak(&mut config);
        let task = tokio::spawn(picket_agent::session::run(config, stop.clone()));
        self.agents.push(stop.clone());
        AgentHandle { id, state_dir: state_dir.to_path_buf(), stop, task }
    }

    /// Create an API token with `role`; returns its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let body = json!({ "name": name, "role": role });
        let t = self.admin(move |c| c.post("/api/v1/api-tokens", &body)).await.expect("create API token");
        t["token"].as_str().expect("secret").to_string()
    }

    /// Request an action as the admin and, when it waits for approval
    /// (offboarding, forced actions, samples of secret places always do),
    /// approve it as a second person. Returns the action as created.
    pub async fn request_action(&self, device: Uuid, body: Value) -> Value {
        let a = self
            .admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body))
            .await
            .expect("create action");
        if a["status"] == "pending_approval" {
            let approver = self.token(&format!("approver-{}", Uuid::new_v4()), "approver").await;
            let id = a["id"].as_str().expect("id").to_string();
            self.api(&approver, move |c| {
                c.post(&format!("/api/v1/actions/{id}/approve"), &json!({ "comment": "second person" }))
            })
            .await
            .expect("approve");
        }
        a
    }

    /// Request `kind` on `device` as the admin (comment "e2e"), wait up to
    /// `secs` seconds for it to succeed or fail, and return it.
    pub async fn act(&self, device: Uuid, kind: &str, params: Value, secs: u64) -> Value {
        let body = json!({ "kind": kind, "params": params, "comment": "e2e" });
        let a = self.admin(move |c| c.post(&format!("/api/v1/devices/{device}/actions"), &body)).await.expect("create");
        let id = a["id"].as_str().expect("id").to_string();
        eventually!(
            secs,
            format!("{kind} finished"),
            matches!(self.action_status(&id).await.as_str(), "succeeded" | "failed")
        );
        self.action(&id).await
    }

    /// The first investigation whose subject's path starts with
    /// `path_prefix`, once its evidence is in (waits up to 60 s).
    pub async fn investigation_with_evidence(&self, path_prefix: &str) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let list = self.admin(|c| c.get("/api/v1/investigations")).await.expect("list");
            let found = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["subject"]["path"].as_str().is_some_and(|p| p.starts_with(path_prefix)))
                .cloned();
            if let Some(id) = found.as_ref().and_then(|i| i["id"].as_str()).map(str::to_string) {
                let shown = self.admin(move |c| c.get(&format!("/api/v1/investigations/{id}"))).await.expect("show");
                if !shown["evidence"].is_null() {
                    return shown;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no investigation of {path_prefix} with evidence");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Undo action `id` (as an admin): the inverse must be of kind
    /// `inverse`; waits up to `secs` for it to end and returns it.
    pub async fn undo(&self, id: &str, inverse: &str, secs: u64) -> Value {
        let path = format!("/api/v1/actions/{id}/undo");
        let undo = self.admin(move |c| c.post(&path, &json!({ "comment": "e2e undo" }))).await.expect("undo");
        assert_eq!(undo["kind"], inverse, "{undo}");
        let undo_id = undo["id"].as_str().expect("id").to_string();
        eventually!(
            secs,
            format!("{inverse} finished"),
            matches!(self.action_status(&undo_id).await.as_str(), "succeeded" | "failed")
        );
        self.action(&undo_id).await
    }

    /// The action as the API shows it.
    pub async fn action(&self, id: &str) -> Value {
        let path = format!("/api/v1/actions/{id}");
        self.admin(move |c| c.get(&path)).await.expect("action")
    }

    pub async fn action_status(&self, id: &str) -> String {
        self.action(id).await["status"].as_str().unwrap_or_default().to_string()
    }

    /// The device as the API shows it.
    pub async fn device(&self, id: Uuid) -> Value {
        self.admin(move |c| c.get(&format!("/api/v1/devices/{id}"))).await.expect("device")
    }

    pub async fn device_status(&self, id: Uuid) -> String {
        self.device(id).await["status"].as_str().unwrap_or_default().to_string()
    }

    pub fn sessions(&self) -> usize {
        self.coordinator().gateway.sessions.len()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for a in &self.agents {
            a.cancel();
        }
        self.shutdown.cancel();
    }
}

/// A child process to aim `kill_process` at; killed and reaped on drop.
pub struct Target(pub std::process::Child);

impl Target {
    /// `sleep` for a long time.
    pub fn sleeper() -> Self {
        Self(quiet(std::process::Command::new("sleep").arg("600")).spawn().expect("spawn sleep"))
    }

    /// A shell that ignores SIGTERM (so a grace period runs to its end).
    pub fn term_ignoring() -> Self {
        let child = quiet(std::process::Command::new("sh").arg("-c").arg("trap '' TERM; while :; do sleep 1; done"))
            .spawn()
            .expect("spawn sh");
        std::thread::sleep(Duration::from_millis(100));
        Self(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quiet(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null())
}

/// Connect over TLS to `addr` (as the IP-address name), trusting only the
/// CA certificates in `ca_pem`.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector.connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp).await
}
