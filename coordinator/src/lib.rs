//! The Picket coordinator: enrolls devices with its own CA, holds one
//! mutual-TLS session per agent, keeps the device registry, and serves the
//! REST API that `picketctl` and the console use.
//!
//! Layout:
//! - [`config`]: TOML config and defaults.
//! - [`pki`]: the CA, the server certificate, device certificates from CSRs.
//! - [`store`]: SQLite / PostgreSQL persistence (sqlx `Any`), migrations.
//! - [`gateway`]: agent listener, TLS verifier, sessions, enrollment.
//! - [`content`]: detection content — rule bundles and indicators for agents, rule validation
//!   (the agent's `content` module holds the same).
//! - [`api`]: axum routes under `/api/v1`, auth and roles, audit, OpenAPI.
//! - [`views`]: the JSON of actions and alerts (API and events alike).
//! - [`client`]: a blocking API client (used by `picketctl` and tests).
//! - [`clock`]: the time now, and times as the API writes them.
//!
//! [`Coordinator::start`] binds both listeners and spawns the tasks;
//! `main.rs` and the tests call the same function.

pub mod actions;
pub mod api;
pub mod click;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
pub mod content;
pub mod events;
mod fsutil;
pub mod gateway;
pub mod investigations;
pub mod pki;
pub mod store;
#[doc(hidden)]
pub mod testdb;
pub mod uploads;
pub mod users;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use gateway::{DeviceDirectory, Gateway};
use store::{Role, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(
        "data dir {path} is in use by another coordinator{holder}: stop it first, or give this one a data dir of its own \
         (two on one data dir would corrupt its database and uploads)"
    )]
    DataDirInUse { path: PathBuf, holder: String },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot write the admin token to {path}: {source}")]
    AdminToken { path: PathBuf, source: std::io::Error },
    #[error("cannot create the first console user: {0}")]
    FirstUser(String),
    /// A route without a role, or an OpenAPI document that cannot be built.
    #[error("API routes: {0}")]
    Routes(String),
    #[error("API TLS: {0}")]
    ApiTls(String),
}

/// A running coordinator.
pub struct Coordinator {
    pub agent_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// `https`, or `http` with `--api-insecure-http`.
    pub api_scheme: &'static str,
    /// Set when this start created the first admin token.
    pub admin_token_path: PathBuf,
    /// Where the first console user's (`admin`) password was written at
    /// the first start.
    pub admin_password_path: PathBuf,
    pub ca_fingerprint: String,
    pub advertise_agent_address: String,
    pub store: Store,
    pub gateway: Arc<Gateway>,
    pub actions: Arc<actions::ActionCenter>,
    /// Base of wrapped links, when there is a click listener.
    pub click_url: Option<String>,
    tasks: JoinSet<()>,
    /// `<data dir>/coordinator.lock`, locked while this coordinator runs.
    _lock: std::fs::File,
}

impl Coordinator {
    /// Validate `config`, open the data dir, CA and database, bind both
    /// listeners and start serving until `shutdown` is cancelled.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        config.validate()?;
        if config.investigations.expansion_approval_threshold.is_some() {
            tracing::warn!(
                "[investigations] expansion_approval_threshold is no longer used: every expansion to other devices waits for an approver"
            );
        }
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
        let lock = lock_data_dir(data_dir)?;
        let ca = Arc::new(pki::Ca::load_or_create(&data_dir.join("pki"))?);
        let store = Store::connect(&config.database_url()).await?;
        let admin_token_path = data_dir.join("admin.token");
        let admin_password_path = data_dir.join("admin.password");
        // Replicas starting together make one first admin, not one each.
        store.exclusively(bootstrap(&store, &admin_token_path, &admin_password_path)).await??;
        let directory = Arc::new(DeviceDirectory::new(store.device_statuses().await?));
        for (id, current, previous) in store.device_serials().await? {
            directory.set_serials(id, gateway::verifier::Serials { current, previous });
        }
        let content = Arc::new(content::Content::load(&store).await?);
        let checker = content::checker::resolve(&config.rules.checker);
        let uploads = Arc::new(
            uploads::Uploads::new(data_dir, config.max_sample_bytes, store.clone())
                .map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?,
        );
        // The click listener is bound now: its address is the default base
        // of wrapped links, which mail hosts get with their link keys.
        let click_listener = match config.click.listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
                what: "clicks",
                addr,
                source,
            })?),
            None => None,
        };
        let links = match &click_listener {
            Some(listener) => {
                let bound = listener.local_addr().map_err(|source| StartError::Bind {
                    what: "clicks",
                    addr: config.click.listen.unwrap_or(config.api_listen),
                    source,
                })?;
                let secret = click::ClickSecret::load_or_create(data_dir)
                    .map_err(|source| StartError::DataDir { path: data_dir.join("click.key"), source })?;
                Some(Arc::new(click::Links { url: config.click_url(bound), secret }))
            }
            None => None,
        };
        let gateway = Gateway::new(
            config.gateway(),
            store.clone(),
            ca.clone(),
            directory,
            content.clone(),
            uploads,
            links.clone(),
        )?;

        let agent_listener = TcpListener::bind(config.agent_listen).await.map_err(|source| StartError::Bind {
            what: "agents",
            addr: config.agent_listen,
            source,
        })?;
        let api_listener = TcpListener::bind(config.api_listen).await.map_err(|source| StartError::Bind {
            what: "API",
            addr: config.api_listen,
            source,
        })?;
        let agent_addr = agent_listener.local_addr().map_err(|source| StartError::Bind {
            what: "agents",
            addr: config.agent_listen,
            source,
        })?;
        let api_addr = api_listener.local_addr().map_err(|source| StartError::Bind {
            what: "API",
            addr: config.api_listen,
            source,
        })?;
        let advertise = config.advertise(agent_addr);

        let mut tasks = JoinSet::new();
        tasks.spawn(gateway.clone().serve(agent_listener, shutdown.clone()));
        tasks.spawn(gateway.clone().watch_indicators(shutdown.clone()));
        tasks.spawn(content::index_current_bundle(store.clone(), content, checker.clone(), data_dir.join("tmp")));
        let center = Arc::new(actions::ActionCenter {
            store: store.clone(),
            gateway: gateway.clone(),
            policy: config.actions.clone(),
            offboard_retention: Duration::from_secs(config.offboard_retention_days.saturating_mul(86_400)),
            clicks: std::sync::OnceLock::new(),
        });
        let ran = center.run_pending_here().await?;
        if ran > 0 {
            tracing::info!(actions = ran, "ran the coordinator's own actions a restart had cut off");
        }
        tasks.spawn(center.clone().run_expiry(Duration::from_secs(config.actions.expiry_check_secs), shutdown.clone()));
        let investigations = Arc::new(investigations::Investigations {
            store: store.clone(),
            center: center.clone(),
            config: config.investigations.clone(),
        });
        tasks.spawn(investigations.clone().run(shutdown.clone()));
        let mut sinks: Vec<Arc<dyn events::sink::Sink>> = Vec::new();
        for url in &config.events.webhooks {
            sinks.push(Arc::new(events::webhook::Webhook::new(url)));
        }
        for target in &config.events.syslog {
            sinks.push(Arc::new(events::syslog::Syslog::new(&target.address, target.transport)));
        }
        for sink in sinks {
            tasks.spawn(events::sink::run(store.clone(), sink, shutdown.clone()));
        }
        let app = api::router(api::AppState {
            store: store.clone(),
            gateway: gateway.clone(),
            advertise_agent_address: advertise.clone(),
            actions: center.clone(),
            investigations: investigations.clone(),
            rules: Arc::new(api::RulesSettings {
                checker,
                scratch: data_dir.join("tmp"),
                max_bundle_bytes: config.rules.max_bundle_bytes,
            }),
            metrics: Arc::default(),
            console: Arc::new(console::Console::new(&config.console)),
        })
        .map_err(StartError::Routes)?;
        let api_cert = if config.api_tls.insecure_http {
            None
        } else {
            let names = config.api_hostnames();
            Some(Arc::new(api::tls::ApiCert::new(&config.api_tls, &ca, &names).map_err(StartError::ApiTls)?))
        };
        // Registered now, so a SIGHUP from here on reloads rather than ends
        // the process.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hup) => {
                tasks.spawn(reload_on_sighup(api_cert.clone(), hup, shutdown.clone()));
            }
            Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP: the API certificate is not reloaded"),
        }
        let api_tls = api_cert.as_ref().map(|c| c.acceptor()).transpose().map_err(StartError::ApiTls)?;
        let api_scheme = if api_tls.is_some() { "https" } else { "http" };
        let click_url = links.as_ref().map(|l| l.url.clone());
        if let (Some(listener), Some(links)) = (click_listener, links) {
            let (clicks, log) =
                click::ClickService::new(store.clone(), links.clone(), config.click.max_clicks_per_minute).await?;
            tasks.spawn(click::run_log(store.clone(), log, shutdown.clone()));
            tasks.spawn(clicks.clone().refresh(Duration::from_secs(30), shutdown.clone()));
            let _ = center.clicks.set(clicks.clone());
            tracing::info!(listen = ?listener.local_addr().ok(), url = %links.url, "click listener serving");
            tasks.spawn(api::server::serve(
                listener,
                click::router(clicks),
                config.http_limits(),
                api_tls.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(api::server::serve(api_listener, app, config.http_limits(), api_tls, shutdown.clone()));
        tracing::info!(agents = %agent_addr, api = %api_addr, database = ?store.backend(), "coordinator serving");
        Ok(Self {
            agent_addr,
            api_addr,
            api_scheme,
            admin_token_path,
            admin_password_path,
            ca_fingerprint: ca.fingerprint(),
            advertise_agent_address: advertise,
            store,
            gateway,
            actions: center,
            click_url,
            tasks,
            _lock: lock,
        })
    }

    /// The API's base URL, e.g. `https://127.0.0.1:7080`.
    pub fn api_url(&self) -> String {
        format!("{}://{}", self.api_scheme, self.api_addr)
    }

    /// Wait until every task has stopped (after `shutdown` was cancelled)
    /// and every upload write in flight has ended, then close the database.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.gateway.uploads.drain().await;
        self.store.close().await;
    }
}

/// First start: the first admin API token and console user, each written
/// to a file in the data dir.
async fn bootstrap(
    store: &Store,
    admin_token_path: &std::path::Path,
    admin_password_path: &std::path::Path,
) -> Result<(), StartError> {
    if store.api_token_count().await? == 0 {
        let first = store::NewApiToken {
            name: "admin",
            user: None,
            kind: store::TokenKind::User,
            role: Role::Admin,
            created_by: "bootstrap",
            expires_at: None,
        };
        let (_, secret) = store.create_api_token(&first).await?;
        fsutil::write_file_0600(admin_token_path, format!("{secret}\n").as_bytes())
            .map_err(|source| StartError::AdminToken { path: admin_token_path.to_path_buf(), source })?;
        tracing::info!(path = %admin_token_path.display(), "created the first admin API token");
    }
    if store.user_count().await? == 0 {
        let password = users::generate_password();
        let hash = users::hash_blocking(password.clone()).await.map_err(StartError::FirstUser)?;
        store.create_user("admin", Role::Admin, &hash, "bootstrap").await?;
        fsutil::write_file_0600(admin_password_path, format!("{password}\n").as_bytes())
            .map_err(|e| StartError::FirstUser(format!("{}: {e}", admin_password_path.display())))?;
        tracing::info!(
            path = %admin_password_path.display(),
            "created the first console user, admin; its password is in this file: sign in and change it"
        );
    }
    Ok(())
}

/// Lock `<data dir>/coordinator.lock` (an advisory lock the kernel drops
/// when the process ends, however it ends): one coordinator per data dir.
/// The file says which process holds it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("coordinator.lock");
    let io = |source| StartError::DataDir { path: path.clone(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty() {
                format!(" (pid {pid})")
            } else {
                String::new()
            };
            return Err(StartError::DataDirInUse { path: dir.to_path_buf(), holder });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(io)?;
    Ok(file)
}

/// Re-read the operator's API certificate on each SIGHUP (new connections
/// get it; open ones keep theirs). A file that cannot be read is logged and
/// the certificate in use stays.
async fn reload_on_sighup(
    cert: Option<Arc<api::tls::ApiCert>>,
    mut hup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let Some(cert) = &cert else {
            tracing::info!("SIGHUP: the API serves plain HTTP; nothing to reload");
            continue;
        };
        match cert.reload() {
            Ok(true) => tracing::info!("SIGHUP: API certificate reloaded"),
            Ok(false) => tracing::info!("SIGHUP: the API certificate is self-issued; nothing to reload"),
            Err(error) => tracing::error!(%error, "SIGHUP: API certificate not reloaded; the previous one stays"),
        }
    }
}
