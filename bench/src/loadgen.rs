//! `picket-loadgen`: N simulated agents with real certificates and real
//! mutual TLS against a running coordinator.
//!
//! 1. Enrolls N identities through the real enrollment exchange (keys made
//!    here, CSRs signed by the coordinator), `--concurrency` at a time.
//! 2. Opens N sessions (Hello → Welcome) from many 127.x source addresses,
//!    measuring handshakes per second.
//! 3. Holds them, heartbeating, for `--hold-secs`; then reports sessions
//!    held, the coordinator's RSS before and after, and memory per session.
//!
//! One task per simulated agent; the process raises its open-file limit to
//! the hard limit and refuses to start more agents than that allows.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use picket_common::io::{read_frame, write_frame};
use picket_common::limits::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use picket_common::proto::{AgentMsg, CoordMsg, Hello};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "picket-loadgen", about = "Simulated Picket agents over real mutual TLS")]
struct Args {
    /// Coordinator agent address.
    #[arg(long)]
    coordinator: SocketAddr,
    /// Enrollment token with at least --agents uses.
    #[arg(long)]
    token: String,
    /// CA fingerprint printed with the token.
    #[arg(long)]
    ca_fingerprint: String,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Spread connections over this many source addresses (127.1.x.y).
    #[arg(long, default_value_t = 200)]
    source_ips: u32,
    /// Heartbeat interval of each simulated agent.
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
    /// How long to hold all sessions before measuring.
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// Enrollments / handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Coordinator process id, to read its resident memory.
    #[arg(long)]
    coordinator_pid: Option<u32>,
}

struct Identity {
    config: Arc<rustls::ClientConfig>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising the open-file limit")?;
    // Each agent holds one socket; keep headroom for the runtime and stdio.
    if args.agents as u64 + 64 > limit {
        bail!(
            "{} agents need more open files than this process may have ({limit}); run several processes",
            args.agents
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let fp = picket_agent::tls::normalise_fingerprint(&args.ca_fingerprint).context("bad --ca-fingerprint")?;

    eprintln!("enrolling {} identities…", args.agents);
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for i in 0..args.agents {
        let permits = permits.clone();
        let (coordinator, token, fp) = (args.coordinator.to_string(), args.token.clone(), fp.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let issued =
                picket_agent::enroll::request_certificate(&coordinator, &token, &fp, &format!("loadgen-{i}")).await?;
            let cert = CertificateDer::from(issued.enrolled.certificate_der);
            let ca = CertificateDer::from(issued.enrolled.ca_der);
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())?;
            let config = picket_agent::tls::session_config(ca, cert, key)?;
            anyhow::Ok(Identity { config: Arc::new(config) })
        });
    }
    let mut identities = Vec::with_capacity(args.agents);
    while let Some(done) = tasks.join_next().await {
        identities.push(done??);
    }
    let enroll_secs = started.elapsed().as_secs_f64();
    eprintln!("enrolled {} in {enroll_secs:.1} s", identities.len());

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = args.coordinator_pid.and_then(rss_kib);
    let live = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let heartbeat = Duration::from_secs(args.heartbeat_secs);
    eprintln!("opening {} sessions…", identities.len());
    let started = Instant::now();
    let mut sessions = JoinSet::new();
    for (i, identity) in identities.into_iter().enumerate() {
        let source = source_ip(i as u32 % args.source_ips.max(1));
        let permits = permits.clone();
        let (live, failed, stop) = (live.clone(), failed.clone(), stop.clone());
        let coordinator = args.coordinator;
        sessions.spawn(async move {
            let permit = permits.acquire_owned().await;
            match open_session(coordinator, source, identity).await {
                Ok(tls) => {
                    live.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    hold(tls, heartbeat, stop).await;
                    live.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("session {i} from {source}: {e:#}");
                }
            }
        });
    }
    while live.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.agents {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = started.elapsed().as_secs_f64();
    let opened = live.load(Ordering::Relaxed);
    eprintln!("{opened} sessions open in {ramp_secs:.1} s; holding for {} s…", args.hold_secs);
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let held = live.load(Ordering::Relaxed);
    let rss_after = args.coordinator_pid.and_then(rss_kib);
    stop.cancel();
    while sessions.join_next().await.is_some() {}

    let per_session = match (rss_before, rss_after) {
        (Some(b), Some(a)) if held > 0 => Some((a.saturating_sub(b)) as f64 / held as f64),
        _ => None,
    };
    let report = serde_json::json!({
        "agents": args.agents,
        "source_ips": args.source_ips,
        "enroll_seconds": round(enroll_secs),
        "enrollments_per_second": round(args.agents as f64 / enroll_secs),
        "sessions_opened": opened,
        "sessions_failed": failed.load(Ordering::Relaxed),
        "ramp_seconds": round(ramp_secs),
        "handshakes_per_second": round(opened as f64 / ramp_secs),
        "sessions_held_after_hold": held,
        "hold_seconds": args.hold_secs,
        "coordinator_rss_kib_before": rss_before,
        "coordinator_rss_kib_after": rss_after,
        "coordinator_kib_per_session": per_session.map(round),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if held < args.agents {
        bail!("only {held} of {} sessions were held", args.agents);
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn source_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8)
}

async fn open_session(
    coordinator: SocketAddr,
    source: Ipv4Addr,
    identity: Identity,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    let tcp = tokio::time::timeout(Duration::from_secs(30), socket.connect(coordinator))
        .await
        .context("connect timed out")??;
    let mut tls = tokio::time::timeout(
        Duration::from_secs(30),
        TlsConnector::from(identity.config).connect(picket_agent::tls::server_name(), tcp),
    )
    .await
    .context("handshake timed out")??;
    let hello = AgentMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "loadgen".into(),
        hostname: "loadgen".into(),
        os: "loadgen".into(),
        kernel: "loadgen".into(),
        capabilities: vec![],
    });
    write_frame(&mut tls, &hello, DEFAULT_MAX_FRAME).await?;
    match tokio::time::timeout(Duration::from_secs(30), read_frame::<_, CoordMsg>(&mut tls, DEFAULT_MAX_FRAME))
        .await
        .context("no Welcome")??
    {
        Some(CoordMsg::Welcome(_)) => Ok(tls),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Heartbeat until `stop`; read acks as they come.
async fn hold(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let reader =
        tokio::spawn(
            async move { while let Ok(Some(_)) = read_frame::<_, CoordMsg>(&mut rd, DEFAULT_MAX_FRAME).await {} },
        );
    // Spread the first heartbeat over the interval so they do not arrive in lockstep.
    let offset = heartbeat.mul_f64(rand_fraction());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, heartbeat);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                seq += 1;
                if write_frame(&mut wr, &AgentMsg::Heartbeat { seq }, DEFAULT_MAX_FRAME).await.is_err() {
                    break;
                }
            }
        }
        if reader.is_finished() {
            break;
        }
    }
    reader.abort();
}

fn rand_fraction() -> f64 {
    // No rand dependency in the bench crate: the clock's nanoseconds are spread enough.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
