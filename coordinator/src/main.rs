//! `picket-coordinator`: parse arguments and config, set up logging, start
//! the coordinator, and stop it on SIGINT/SIGTERM (a second signal quits at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use picket_coordinator::{Config, Coordinator};
use tokio_util::sync::CancellationToken;

/// Exit code for bad usage or configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "picket-coordinator",
    version,
    about = "Picket coordinator: enrollment, agent sessions, device registry, API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve agents and the API.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (see packaging/coordinator.toml); flags override it.
    #[arg(long, env = "PICKET_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Where the CA, the SQLite database and the admin token live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Agent listener (mutual TLS), e.g. 0.0.0.0:7443.
    #[arg(long)]
    agent_listen: Option<SocketAddr>,
    /// API and console listener (HTTPS), e.g. 127.0.0.1:7080.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// PEM certificate chain for the API (with --api-key; reloaded on
    /// SIGHUP). Without it the coordinator's CA issues one for
    /// --api-hostname.
    #[arg(long, requires = "api_key")]
    api_cert: Option<PathBuf>,
    /// PEM private key of --api-cert.
    #[arg(long, requires = "api_cert")]
    api_key: Option<PathBuf>,
    /// A name (DNS or IP) for the self-issued API certificate; repeatable
    /// (default: this host's name, localhost, 127.0.0.1, ::1).
    #[arg(long = "api-hostname", value_name = "NAME")]
    api_hostnames: Vec<String>,
    /// Serve the API over plain HTTP (only on a loopback address).
    #[arg(long)]
    api_insecure_http: bool,
    /// sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data dir).
    #[arg(long, env = "PICKET_DATABASE_URL")]
    database_url: Option<String>,
    /// HOST:PORT agents should dial, printed in enroll commands.
    #[arg(long)]
    advertise_agent_address: Option<String>,
    /// Click listener for wrapped links (time-of-click protection), e.g.
    /// 0.0.0.0:7444; mail hosts wrap links only when it is set.
    #[arg(long)]
    click_listen: Option<SocketAddr>,
    /// Base URL of wrapped links as users reach the click listener, e.g.
    /// https://click.example.org:7444 (default: https:// and --click-listen).
    #[arg(long)]
    click_url: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    init_tracing(args.log_format);
    let config = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picket-coordinator: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("picket-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

fn build_config(args: ServeArgs) -> Result<Config, picket_coordinator::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.agent_listen {
        config.agent_listen = v;
    }
    if let Some(v) = args.api_listen {
        config.api_listen = v;
    }
    if let Some(v) = args.database_url {
        config.database_url = v;
    }
    if let (Some(cert), Some(key)) = (args.api_cert, args.api_key) {
        config.api_tls.cert = cert;
        config.api_tls.key = key;
    }
    if !args.api_hostnames.is_empty() {
        config.api_tls.hostnames = args.api_hostnames;
    }
    if args.api_insecure_http {
        config.api_tls.insecure_http = true;
    }
    if let Some(v) = args.advertise_agent_address {
        config.advertise_agent_address = v;
    }
    if let Some(v) = args.click_listen {
        config.click.listen = Some(v);
    }
    if let Some(v) = args.click_url {
        config.click.url = v;
    }
    config.validate()?;
    Ok(config)
}

async fn serve(config: Config) -> ExitCode {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let shutdown = CancellationToken::new();
    let coordinator = match Coordinator::start(config, shutdown.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picket-coordinator: {e}");
            shutdown.cancel();
            return ExitCode::from(match e {
                picket_coordinator::StartError::Config(_) => EXIT_CONFIG,
                _ => 1,
            });
        }
    };
    println!("agents:      {} (advertised as {})", coordinator.agent_addr, coordinator.advertise_agent_address);
    println!("api:         {}", coordinator.api_url());
    println!("admin token: {}", coordinator.admin_token_path.display());
    println!(
        "console:     {}/ (user admin; its first password is in {})",
        coordinator.api_url(),
        coordinator.admin_password_path.display()
    );
    println!("CA SHA-256:  {}", coordinator.ca_fingerprint);
    wait_for_signal().await;
    tracing::info!("stopping: draining sessions (a second signal quits at once)");
    shutdown.cancel();
    tokio::select! {
        _ = coordinator.join() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out"),
        _ = wait_for_signal() => tracing::warn!("second signal: quitting now"),
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
