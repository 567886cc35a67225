//! Console page times at fleet size: a release coordinator (SQLite, or
//! PostgreSQL with `--database-url`) loaded with `--devices` devices and
//! `--actions` finished actions, then the pages an analyst opens most —
//! the device list (paged, searched, filtered), the action center's history
//! (first page, deeper pages by cursor, filtered) and the overview — each
//! fetched `--samples` times over one keep-alive HTTPS connection by a
//! signed-in session. Prints p50 / p95 / max of the request time (loopback,
//! TLS included) and the page size.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use picket_common::actions::ActionKind;
use picket_coordinator::client::Client;
use picket_coordinator::store::{ActionSource, ActionStatus, ImportedAction, NewDevice};
use picket_coordinator::{Config, Coordinator};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    #[arg(long, default_value_t = 100_000)]
    actions: usize,
    /// Requests per page kind.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// PostgreSQL URL (a fresh database); SQLite in a temp dir without it.
    #[arg(long, default_value = "")]
    database_url: String,
}

const KINDS: [ActionKind; 5] = [
    ActionKind::Scan,
    ActionKind::Isolate,
    ActionKind::ReleaseIsolation,
    ActionKind::CollectPackage,
    ActionKind::KillProcess,
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let config = Config {
        data_dir: scratch.path().join("coordinator"),
        agent_listen: "127.0.0.1:0".parse()?,
        api_listen: "127.0.0.1:0".parse()?,
        database_url: args.database_url.clone(),
        ..Config::default()
    };
    let coordinator = Coordinator::start(config, shutdown.clone()).await?;
    let database = if args.database_url.is_empty() { "SQLite" } else { "PostgreSQL" };

    // The fleet: names like a real one, a few groups, and a history spread
    // over the last 180 days.
    let started = Instant::now();
    let names: Vec<String> = (0..args.devices).map(|i| format!("host-{:05}.corp.example", i)).collect();
    let ips: Vec<String> =
        (0..args.devices).map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)).collect();
    let groups = ["default", "servers", "laptops", "lab"];
    let ids: Vec<uuid::Uuid> = (0..args.devices).map(|_| uuid::Uuid::new_v4()).collect();
    let devices: Vec<NewDevice> = (0..args.devices)
        .map(|i| NewDevice {
            id: ids[i],
            hostname: &names[i],
            group: groups[i % groups.len()],
            ip: &ips[i],
            cert_serial: "00",
            cert_not_after: 0,
            enrollment_token_id: "bench",
        })
        .collect();
    let now = picket_coordinator::clock::now_ms();
    let day = 86_400_000i64;
    let actions: Vec<ImportedAction> = (0..args.actions)
        .map(|i| {
            let at = now - (i as i64 * 180 * day) / args.actions.max(1) as i64;
            ImportedAction {
                kind: KINDS[i % KINDS.len()],
                params: "{}",
                device_id: ids[i % ids.len()],
                source: ActionSource::ManualDeviceAction,
                requestor: "bench",
                comment: "benchmark history",
                status: if i % 10 == 0 { ActionStatus::Failed } else { ActionStatus::Succeeded },
                created_at: at,
                updated_at: at + 1000,
            }
        })
        .collect();
    coordinator.store.import(&devices, &actions).await.context("load the fleet")?;
    println!(
        "{database}: loaded {} devices and {} actions in {:.1} s",
        args.devices,
        args.actions,
        started.elapsed().as_secs_f64()
    );

    let url = coordinator.api_url();
    let ca = std::fs::read(scratch.path().join("coordinator/pki/ca.pem"))?;
    let password = std::fs::read_to_string(&coordinator.admin_password_path)?.trim().to_string();
    let samples = args.samples;
    let pages = args.devices.div_ceil(50).max(1);
    let report = tokio::task::spawn_blocking(move || measure(&url, &ca, &password, samples, pages)).await??;
    println!("{:<44} {:>9} {:>9} {:>9} {:>10}", "page", "p50 ms", "p95 ms", "max ms", "size KiB");
    for (name, times, size) in report {
        let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
        println!("{name:<44} {:>9.1} {:>9.1} {:>9.1} {:>10.1}", p(0.5), p(0.95), p(1.0), size as f64 / 1024.0);
    }
    shutdown.cancel();
    Ok(())
}

/// The URL of a page kind's `i`-th request.
type PageUrl = Box<dyn Fn(usize) -> String>;

/// Signs in, then times each page kind; (name, sorted times, largest size).
fn measure(
    url: &str,
    ca: &[u8],
    password: &str,
    samples: usize,
    pages: usize,
) -> Result<Vec<(String, Vec<Duration>, usize)>> {
    let tls = Client::with_ca(url, "", ca)?.tls_config();
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).tls_config(tls).build().into();
    let form = agent.get(&format!("{url}/login")).call()?;
    let login = cookie(&form, "__Host-picket_login").context("login cookie")?;
    let signed = agent
        .post(&format!("{url}/login"))
        .header("Cookie", &format!("__Host-picket_login={login}"))
        .send_form([("username", "admin"), ("password", password), ("csrf_token", login.as_str())])?;
    let session = cookie(&signed, "__Host-picket_session").context("signed in")?;
    let session = format!("__Host-picket_session={session}");
    let get = |path: &str| -> Result<(Duration, String)> {
        let start = Instant::now();
        let mut r = agent.get(&format!("{url}{path}")).header("Cookie", &session).call()?;
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string()?;
        let took = start.elapsed();
        if status != 200 {
            bail!("{path}: {status}");
        }
        Ok((took, body))
    };
    // Cursors of deeper history pages, followed from the first.
    let mut cursors = Vec::new();
    let mut next = "/actions?tab=history".to_string();
    for _ in 0..20 {
        let (_, body) = get(&next)?;
        let Some(at) = body.find("rel=\"next\" href=\"") else { break };
        let href = body[at + 17..].split('"').next().unwrap_or_default().replace("&amp;", "&");
        cursors.push(href.clone());
        next = href;
    }
    let kinds: Vec<(&str, PageUrl)> = vec![
        ("overview", Box::new(|_| "/".to_string())),
        ("devices: page n of the whole fleet", Box::new(move |i| format!("/devices?page={}", 1 + i * 37 % pages))),
        ("devices: search by name", Box::new(|i| format!("/devices?q=host-{:03}", i % 100))),
        (
            "devices: group filter, sorted by last seen",
            Box::new(|_| "/devices?group=servers&sort=last_seen&order=desc".into()),
        ),
        ("history: first page", Box::new(|_| "/actions?tab=history".to_string())),
        ("history: pages 2-21 by cursor", Box::new(move |i| cursors[i % cursors.len().max(1)].clone())),
        ("history: kind isolate, last 30 days", Box::new(|_| "/actions?tab=history&kind=isolate&period=30d".into())),
        ("history: failed only", Box::new(|_| "/actions?tab=history&status=failed".into())),
    ];
    let mut out = Vec::new();
    for (name, path) in kinds {
        get(&path(0))?; // warm
        let mut times = Vec::with_capacity(samples);
        let mut size = 0;
        for i in 0..samples {
            let (took, body) = get(&path(i))?;
            times.push(took);
            size = size.max(body.len());
        }
        times.sort();
        out.push((name.to_string(), times, size));
    }
    Ok(out)
}

fn cookie(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').next().and_then(|kv| kv.split_once('=')).filter(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    })
}
