//! `picket-agent`: enroll, run the session, show status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use picket_agent::config::{AgentConfig, DEFAULT_STATE_DIR};
use picket_agent::enroll::{enroll, EnrollOptions};
use picket_agent::state::StateDir;
use tokio_util::sync::CancellationToken;

const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "picket-agent", version, about = "Picket endpoint agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this device with a coordinator (use the command printed by
    /// `picketctl enroll-token create`).
    Enroll {
        /// Coordinator agent address, HOST:PORT.
        #[arg(long)]
        coordinator: String,
        /// Enrollment token (pkt_…).
        #[arg(long, env = "PICKET_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// SHA-256 fingerprint of the coordinator's CA.
        #[arg(long)]
        ca_fingerprint: String,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Run the agent: hold the session to the coordinator until stopped.
    Run {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// TOML config (see packaging/agent.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Offboard this device without the coordinator, with a token from
    /// `POST /api/v1/devices/{id}/offboarding-token`: releases isolation,
    /// removes the identity and state, disables the service.
    Offboard {
        #[arg(long, env = "PICKET_OFFBOARD_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Scan files and directories locally with YARA rules (no coordinator
    /// needed). Exit status: 0 nothing found, 1 detections, 2 failure.
    Scan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Rule file or directory (repeatable). The built-in EICAR rule is always on.
        #[arg(long = "rules")]
        rules: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Share of the cores to use, in percent.
        #[arg(long, default_value_t = 100)]
        cpu_percent: u8,
        /// Skip files larger than this many bytes.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        max_file_size: u64,
        /// Run at lowered CPU (nice 10) and I/O priority, as scans the
        /// coordinator asks for do.
        #[arg(long)]
        low_priority: bool,
    },
    /// YARA rule tools.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Show device id, coordinator, connection state and last contact.
    Status {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Compile rule files as the agent would (each file on its own; one bad
    /// file never stops the others) and report. Exit status: 0 at least one
    /// file compiled (with --json: the report was written), 1 none did. The
    /// coordinator runs this on upload.
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Refuse `include` statements, as agents do in bundles from the coordinator.
        #[arg(long)]
        no_includes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Enroll { coordinator, token, ca_fingerprint, state_dir, force } => {
            let opts = EnrollOptions { coordinator, token, ca_fingerprint, state: StateDir::new(state_dir), force };
            match runtime().block_on(enroll(opts)) {
                Ok(e) => {
                    println!("enrolled as device {} in group {:?}", e.device_id, e.group);
                    println!("coordinator {} (CA {})", e.coordinator, e.ca_fingerprint);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("picket-agent enroll: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { state_dir, config } => {
            let mut cfg = match config.as_deref().map(AgentConfig::from_file).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    eprintln!("picket-agent: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Some(dir) = state_dir {
                cfg.state_dir = dir;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("picket-agent: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            runtime().block_on(run(cfg))
        }
        Command::Status { state_dir, json } => status(&StateDir::new(state_dir), json),
        Command::Rules(RulesCmd::Check { paths, json, no_includes }) => check_rules(&paths, json, no_includes),
        Command::Scan { paths, rules, json, cpu_percent, max_file_size, low_priority } => {
            let opts = picket_agent::scan::ScanOptions {
                max_file_size,
                threads: picket_agent::scan::ScanOptions::threads_for_cpu_percent(cpu_percent),
                skip: picket_agent::scan::targets::excluded_mounts(),
                low_priority,
            };
            scan_locally(&paths, &rules, json, &opts)
        }
        Command::Offboard { token, state_dir } => {
            let platform = picket_agent::platform::native();
            match picket_agent::offboard::offboard_locally(platform.as_ref(), &StateDir::new(&state_dir), &token) {
                Ok(report) => {
                    println!(
                        "offboarded device {}; identity and state removed from {}",
                        report.device_id,
                        state_dir.display()
                    );
                    if std::process::Command::new("systemctl")
                        .args(["disable", "--now", "picket-agent"])
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        println!("picket-agent.service disabled and stopped");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("picket-agent offboard: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: AgentConfig) -> ExitCode {
    let shutdown = CancellationToken::new();
    let mut agent = tokio::spawn(picket_agent::session::run(config, shutdown.clone()));
    tokio::select! {
        done = &mut agent => return finish(done),
        _ = wait_for_signal() => {}
    }
    tracing::info!("stopping (a second signal quits at once)");
    shutdown.cancel();
    tokio::select! {
        done = &mut agent => finish(done),
        _ = tokio::time::sleep(Duration::from_secs(10)) => ExitCode::SUCCESS,
        _ = wait_for_signal() => ExitCode::SUCCESS,
    }
}

fn finish(done: Result<Result<(), picket_agent::session::RunError>, tokio::task::JoinError>) -> ExitCode {
    match done {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("picket-agent: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("picket-agent: agent task failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_rules(paths: &[PathBuf], json: bool, no_includes: bool) -> ExitCode {
    use picket_agent::scan::{Engine, Indicators, RuleFileError};
    let sandboxed: &[PathBuf] = if no_includes { paths } else { &[] };
    let (engine, mut errors) = Engine::load_with(paths, Indicators::default(), sandboxed);
    for p in paths.iter().filter(|p| std::fs::symlink_metadata(p).is_err()) {
        errors.push(RuleFileError { file: p.display().to_string(), error: "does not exist".into() });
    }
    if json {
        let report = serde_json::json!({ "loaded": engine.loaded, "errors": errors, "rules": engine.rule_count,
            "severities": engine.severities() });
        println!("{report}");
    } else {
        for e in &errors {
            println!("FAILED {}: {}", e.file, e.error);
        }
        println!("{} files compiled, {} failed, {} rules", engine.loaded.len(), errors.len(), engine.rule_count);
    }
    // With --json the report is the answer, whatever it says.
    if json || !engine.loaded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn scan_locally(paths: &[PathBuf], rules: &[PathBuf], json: bool, opts: &picket_agent::scan::ScanOptions) -> ExitCode {
    use picket_agent::scan::{scan, Engine, Indicators, ScanProgress};
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering;
    let (engine, errors) = Engine::load(rules, Indicators::default());
    for e in &errors {
        eprintln!("picket-agent scan: skipped rule file {}: {}", e.file, e.error);
    }
    if !rules.is_empty() && engine.loaded.is_empty() {
        eprintln!("picket-agent scan: no rule file could be loaded");
        return ExitCode::from(2);
    }
    let progress = ScanProgress::default();
    let show = std::io::stderr().is_terminal() && !json;
    let done = std::sync::atomic::AtomicBool::new(false);
    let summary = std::thread::scope(|s| {
        if show {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let pct = usize::from(progress.estimated_percent());
                    eprint!(
                        "\r[{:<20}] {pct:>3}% {} files, {} MiB, {} detections ",
                        "#".repeat(pct / 5),
                        progress.files.load(Ordering::Relaxed),
                        progress.bytes.load(Ordering::Relaxed) / (1024 * 1024),
                        progress.detections.load(Ordering::Relaxed)
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                eprintln!();
            });
        }
        let summary = scan(&engine, paths, opts, &progress, &|_| {});
        done.store(true, Ordering::Relaxed);
        summary
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
    } else {
        for d in &summary.detections {
            println!(
                "{:<13} {} ({})  {}  {}",
                format!("{:?}", d.severity).to_lowercase(),
                d.rule,
                d.namespace,
                d.path,
                d.sha256
            );
        }
        println!(
            "{} files, {} bytes, {} detections, {} errors, {} skipped, {:.2} s ({} rules)",
            summary.files,
            summary.bytes,
            summary.detections.len(),
            summary.errors,
            summary.skipped,
            summary.seconds,
            engine.rule_count
        );
        for e in &summary.error_samples {
            eprintln!("error: {e}");
        }
    }
    if summary.detections.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn status(state: &StateDir, json: bool) -> ExitCode {
    let enrollment = match state.enrollment() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("picket-agent status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = match state.status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("picket-agent status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = status.as_ref().is_some_and(|s| std::path::Path::new(&format!("/proc/{}", s.pid)).exists());
    let connected = running && status.as_ref().is_some_and(|s| s.connected);
    let last_contact = status.as_ref().and_then(|s| s.last_contact.clone());
    let last_error = status.as_ref().and_then(|s| s.last_error.clone());
    let isolated = state.path().join("isolation.json").exists();
    if json {
        let out = serde_json::json!({
            "device_id": enrollment.device_id,
            "coordinator": enrollment.coordinator,
            "group": enrollment.group,
            "running": running,
            "connected": connected,
            "last_contact": last_contact,
            "last_error": last_error,
            "isolated": isolated,
        });
        println!("{out}");
    } else {
        println!("device id:    {}", enrollment.device_id);
        println!("coordinator:  {}", enrollment.coordinator);
        println!("group:        {}", enrollment.group);
        println!("agent:        {}", if running { "running" } else { "not running" });
        println!("connected:    {}", if connected { "yes" } else { "no" });
        println!("last contact: {}", last_contact.as_deref().unwrap_or("never"));
        println!("isolated:     {}", if isolated { "yes (only the coordinator is reachable)" } else { "no" });
        if let Some(e) = last_error {
            println!("last error:   {e}");
        }
    }
    ExitCode::SUCCESS
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts (fails only when the OS refuses threads)")
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
