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
    /// Coordinator API URL: with it, measure action dispatch after the hold.
    #[arg(long)]
    api: Option<String>,
    /// File with an API token that may create and approve actions.
    #[arg(long)]
    api_token_file: Option<std::path::PathBuf>,
    /// The coordinator's CA (PEM), which its HTTPS certificate chains to.
    #[arg(long)]
    api_ca_file: Option<std::path::PathBuf>,
    /// Approve → agent receives the action, measured this many times one by one.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Also approve one action per agent in a single bulk call and time delivery to all.
    #[arg(long)]
    bulk: bool,
}

struct Identity {
    device_id: picket_common::Uuid,
    config: Arc<rustls::ClientConfig>,
}

/// When each simulated agent received each action.
#[derive(Default)]
struct Arrivals {
    at: std::sync::Mutex<std::collections::HashMap<picket_common::Uuid, Instant>>,
    count: AtomicUsize,
}

impl Arrivals {
    fn record(&self, action: picket_common::Uuid) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if at.insert(action, Instant::now()).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, action: &picket_common::Uuid) -> Option<Instant> {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).get(action).copied()
    }
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
            anyhow::Ok(Identity { device_id: issued.enrolled.device_id, config: Arc::new(config) })
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
    let arrivals = Arc::new(Arrivals::default());
    let devices: Vec<picket_common::Uuid> = identities.iter().map(|i| i.device_id).collect();
    for (i, identity) in identities.into_iter().enumerate() {
        let arrivals = arrivals.clone();
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
                    hold(tls, heartbeat, stop, arrivals).await;
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
    let dispatch = match (&args.api, &args.api_token_file) {
        (Some(api), Some(file)) => {
            let token = std::fs::read_to_string(file).context("reading --api-token-file")?.trim().to_string();
            let ca = match &args.api_ca_file {
                Some(path) => Some(std::fs::read(path).context("reading --api-ca-file")?),
                None => None,
            };
            let client = match ca {
                Some(ca) => picket_coordinator::client::Client::with_ca(api, &token, &ca)?,
                None => picket_coordinator::client::Client::new(api, &token),
            };
            Some(measure_dispatch(client, &devices, &arrivals, args.latency_samples, args.bulk).await?)
        }
        _ => None,
    };
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
        "dispatch": dispatch,
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

/// Heartbeat until `stop`; answer actions at once (started, then succeeded)
/// and note when each arrived.
async fn hold(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    heartbeat: Duration,
    stop: CancellationToken,
    arrivals: Arc<Arrivals>,
) {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (answers, mut to_send) = tokio::sync::mpsc::channel::<AgentMsg>(8);
    let reader = tokio::spawn(async move {
        while let Ok(Some(msg)) = read_frame::<_, CoordMsg>(&mut rd, DEFAULT_MAX_FRAME).await {
            if let CoordMsg::Action(req) = msg {
                arrivals.record(req.action_id);
                let id = req.action_id;
                let done =
                    picket_common::actions::ActionOutcome::Succeeded { output_json: "{\"simulated\":true}".into() };
                let result = picket_common::actions::ActionResult { action_id: id, outcome: done };
                if answers.send(AgentMsg::ActionStarted { action_id: id }).await.is_err()
                    || answers.send(AgentMsg::ActionResult(result)).await.is_err()
                {
                    break;
                }
            }
        }
    });
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
            Some(msg) = to_send.recv() => {
                if write_frame(&mut wr, &msg, DEFAULT_MAX_FRAME).await.is_err() {
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

/// Approve → the simulated agent has the action: one at a time for
/// `samples` devices (p50 / p99), then optionally one bulk approval for all.
async fn measure_dispatch(
    client: picket_coordinator::client::Client,
    devices: &[picket_common::Uuid],
    arrivals: &Arrivals,
    samples: usize,
    bulk: bool,
) -> anyhow::Result<serde_json::Value> {
    let client = Arc::new(client);
    let call = |path: String, body: serde_json::Value| {
        let client = client.clone();
        async move { tokio::task::spawn_blocking(move || client.post(&path, &body)).await?.map_err(anyhow::Error::from) }
    };
    // Pending actions need approval (the bench config requires it for `scan`).
    let create = |device: picket_common::Uuid, n: usize| {
        call(
            format!("/api/v1/devices/{device}/actions"),
            serde_json::json!({ "kind": "scan", "params": { "paths": [format!("/bench/{n}")] }, "comment": "benchmark" }),
        )
    };
    eprintln!("measuring approve → delivery latency over {samples} actions…");
    let mut latencies = Vec::with_capacity(samples);
    for (n, device) in devices.iter().cycle().take(samples).enumerate() {
        let action = create(*device, n).await?;
        let id: picket_common::Uuid = action["id"].as_str().context("action id")?.parse()?;
        let t0 = Instant::now();
        call(format!("/api/v1/actions/{id}/approve"), serde_json::json!({ "comment": "bench" })).await?;
        let deadline = t0 + Duration::from_secs(10);
        let arrived = loop {
            if let Some(at) = arrivals.get(&id) {
                break at;
            }
            if Instant::now() > deadline {
                bail!("action {id} never reached its agent");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        latencies.push(arrived.duration_since(t0).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len() - 1)];
    let mut report = serde_json::json!({
        "latency_samples": latencies.len(),
        "approve_to_agent_ms_p50": round(pct(0.50)),
        "approve_to_agent_ms_p99": round(pct(0.99)),
        "approve_to_agent_ms_max": round(pct(1.0)),
    });
    if bulk {
        eprintln!("creating {} pending actions for the bulk approval…", devices.len());
        let mut ids = Vec::with_capacity(devices.len());
        let permits = Arc::new(Semaphore::new(16));
        let mut tasks = JoinSet::new();
        for (n, device) in devices.iter().enumerate() {
            let permits = permits.clone();
            let fut = create(*device, samples + n);
            tasks.spawn(async move {
                let _p = permits.acquire_owned().await?;
                fut.await
            });
        }
        while let Some(done) = tasks.join_next().await {
            ids.push(done??["id"].as_str().context("id")?.to_string());
        }
        let before = arrivals.count.load(Ordering::Relaxed);
        eprintln!("approving {} actions in one call…", ids.len());
        let t0 = Instant::now();
        call("/api/v1/actions/approve".into(), serde_json::json!({ "ids": ids, "comment": "bulk" })).await?;
        let approve_returned = t0.elapsed();
        while arrivals.count.load(Ordering::Relaxed) < before + ids.len() {
            if t0.elapsed() > Duration::from_secs(600) {
                bail!("bulk delivery incomplete after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        report["bulk_actions"] = serde_json::json!(ids.len());
        report["bulk_approve_call_seconds"] = serde_json::json!(round(approve_returned.as_secs_f64()));
        report["bulk_all_delivered_seconds"] = serde_json::json!(round(t0.elapsed().as_secs_f64()));
    }
    Ok(report)
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
