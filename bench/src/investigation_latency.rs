//! Detection → quarantine latency of an automated investigation, with a
//! large search place for copies. A real coordinator (SQLite, loopback) and a
//! real agent in this process, real mutual TLS, real-time protection on a
//! drop directory, `full` automation; the copy search place holds `--gib`
//! GiB of files. Each run drops a fresh EICAR variant and times:
//! - alert → quarantined: the alert's `first_seen` to the `succeeded`
//!   transition of its `stop_and_quarantine` (both coordinator clock);
//! - drop → gone: the bench's own clock, from writing the file to its
//!   disappearance (real-time debounce and scan included);
//! - the evidence's copy search (seconds, files looked at, bytes read).
//!
//! `bench/run-investigation.sh` builds and runs it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use picket_agent::enroll::{enroll, EnrollOptions};
use picket_agent::state::StateDir;
use picket_coordinator::client::Client;
use picket_coordinator::{Config, Coordinator};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Where the search-place data lives (made once, reused).
    #[arg(long, default_value = "/var/tmp/picket-bench-search")]
    data: PathBuf,
    /// GiB of files in the search place.
    #[arg(long, default_value_t = 5)]
    gib: u64,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Fill `dir` with `gib` GiB: 32 MiB files (below the scanners' 256 MiB
/// size cap, as in a home directory: every one of them is a candidate)
/// plus 4,000 small ones.
fn make_data(dir: &Path, gib: u64) -> anyhow::Result<u64> {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("small"))?;
    let mut total = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut fill = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..gib * 32 {
        let path = dir.join(format!("medium-{i}.bin"));
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) != 32 << 20 {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for _ in 0..32 {
                fill(&mut buf);
                f.write_all(&buf)?;
            }
            f.flush()?;
        }
        total += 32 << 20;
    }
    for i in 0..4000u64 {
        let path = dir.join("small").join(format!("f{i}.dat"));
        let len = 1024 + (i * 7919) % 60_000;
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) != len {
            fill(&mut buf[..len as usize]);
            std::fs::write(&path, &buf[..len as usize])?;
        }
        total += len;
    }
    Ok(total)
}

fn eicar(pad: usize) -> anyhow::Result<Vec<u8>> {
    let b64 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/eicar/eicar.com.b64");
    let out = std::process::Command::new("base64").arg("-d").arg(&b64).output()?;
    anyhow::ensure!(out.status.success(), "base64 -d {}", b64.display());
    let mut e = out.stdout;
    e.extend(std::iter::repeat_n(b'\n', pad));
    Ok(e)
}

fn ms(v: &Value) -> Option<i64> {
    let t = time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The API's address and a token.
struct Api {
    url: String,
    token: String,
    /// The coordinator's CA (PEM).
    ca: Vec<u8>,
}

async fn call<F>(api: &Api, f: F) -> anyhow::Result<Value>
where
    F: FnOnce(&Client) -> Result<Value, picket_coordinator::client::ClientError> + Send + 'static,
{
    let client = Client::with_ca(&api.url, &api.token, &api.ca)?;
    Ok(tokio::task::spawn_blocking(move || f(&client)).await??)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bytes = make_data(&args.data, args.gib).context("making the search data")?;
    let scratch = tempfile::tempdir()?;
    let drop_dir = scratch.path().join("drop");
    std::fs::create_dir_all(&drop_dir)?;
    let shutdown = CancellationToken::new();
    let mut config = Config {
        data_dir: scratch.path().join("coordinator"),
        agent_listen: "127.0.0.1:0".parse()?,
        api_listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    config.investigations.automatic = true;
    config.investigations.temp_folders = vec![drop_dir.display().to_string()];
    config.investigations.copy_search_paths = vec![args.data.display().to_string()];
    let coordinator = Coordinator::start(config, shutdown.clone()).await?;
    let token = std::fs::read_to_string(&coordinator.admin_token_path)?.trim().to_string();
    let ca = std::fs::read(scratch.path().join("coordinator/pki/ca.pem"))?;
    let client = Api { url: coordinator.api_url(), token, ca };
    let t = call(&client, |c| c.post("/api/v1/enrollment-tokens", &json!({ "max_uses": 1 }))).await?;
    let state = scratch.path().join("agent");
    enroll(EnrollOptions {
        coordinator: coordinator.agent_addr.to_string(),
        token: t["token"].as_str().unwrap_or_default().to_string(),
        ca_fingerprint: t["ca_fingerprint"].as_str().unwrap_or_default().to_string(),
        state: StateDir::new(&state),
        force: false,
    })
    .await?;
    let mut agent = picket_agent::AgentConfig { state_dir: state, heartbeat_secs: 5, ..Default::default() };
    agent.rule_dirs.clear();
    agent.realtime.paths = vec![drop_dir.display().to_string()];
    let agent_stop = CancellationToken::new();
    let agent_task = tokio::spawn(picket_agent::session::run(agent, agent_stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "search place: {} ({:.2} GiB in {} files)",
        args.data.display(),
        bytes as f64 / (1u64 << 30) as f64,
        args.gib * 32 + 4000
    );
    let mut latencies = Vec::new();
    for run in 0..args.runs {
        let file = drop_dir.join(format!("dropped-{run}.com"));
        let dropped = Instant::now();
        std::fs::write(&file, eicar(run + 1)?)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while file.exists() {
            anyhow::ensure!(Instant::now() < deadline, "{} was never quarantined", file.display());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let gone = dropped.elapsed();
        // The investigation of that path, its quarantine and its evidence.
        let want = file.display().to_string();
        let (inv, evidence) = loop {
            let list = call(&client, |c| c.get("/api/v1/investigations")).await?;
            let found =
                list["items"].as_array().into_iter().flatten().find(|i| i["subject"]["path"] == want.as_str()).cloned();
            if let Some(i) = found {
                let id = i["id"].as_str().unwrap_or_default().to_string();
                let shown = call(&client, move |c| c.get(&format!("/api/v1/investigations/{id}"))).await?;
                let ev = shown["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["kind"] == "collect_evidence")
                    .cloned();
                if let Some(ev) = ev.filter(|e| e["status"] == "succeeded") {
                    break (shown, ev);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no evidence for {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let alert_id = inv["alert_id"].as_str().unwrap_or_default().to_string();
        let alert = call(&client, move |c| c.get(&format!("/api/v1/alerts/{alert_id}"))).await?;
        let q = inv["actions"].as_array().into_iter().flatten().find(|a| a["kind"] == "stop_and_quarantine").cloned();
        let q_id = q.and_then(|q| q["id"].as_str().map(str::to_string)).context("no quarantine")?;
        let q = call(&client, move |c| c.get(&format!("/api/v1/actions/{q_id}"))).await?;
        let succeeded =
            q["timeline"].as_array().into_iter().flatten().find(|t| t["to"] == "succeeded").and_then(|t| ms(&t["at"]));
        let first_seen = ms(&alert["first_seen"]);
        let latency = succeeded.zip(first_seen).map(|(s, f)| s - f).context("timestamps")?;
        let search = &evidence["result"]["output"]["copies_search"];
        println!(
            "run {run}: alert → quarantined {latency} ms; drop → gone {} ms; copy search {:.2} s, {} files looked at, {} read ({} bytes), complete {}",
            gone.as_millis(),
            search["seconds"].as_f64().unwrap_or(0.0),
            search["files_seen"],
            search["files_hashed"],
            search["bytes_hashed"],
            search["complete"],
        );
        latencies.push(latency);
    }
    latencies.sort_unstable();
    println!(
        "alert → quarantined over {} runs: median {} ms, max {} ms",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    agent_stop.cancel();
    let _ = agent_task.await;
    shutdown.cancel();
    coordinator.join().await;
    Ok(())
}
