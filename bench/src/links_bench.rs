//! Time-of-click figures (issue 16): what wrapping links costs a delivery,
//! and how many clicks the click listener checks a second with a large
//! blocklist.
//!
//! 1. Rewrite: a ~100 KB HTML newsletter (multipart/alternative, HTML in
//!    quoted-printable) — the rewrite alone, the `picket-linkwrap` filter
//!    process against `cat` as a no-op filter, and delivery over LMTP into
//!    a real Dovecot with the filter and without it, and through the
//!    `picket-linkwrap lmtp` proxy in front of it (without a key: the hop
//!    alone; with one: the hop and the rewrite).
//! 2. Clicks: a coordinator whose blocklist holds `--blocks` entries (half
//!    exact links, half domains), HTTPS keep-alive clients clicking wrapped
//!    links (half blocked, half allowed) for `--seconds`; then every click
//!    is looked for in the click log. Also the bare blocklist lookup.
//!
//! `bench/run-links.sh [BLOCKS] [SECONDS] [CLIENTS]`

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use picket_common::link_rewrite::{wrap_links, Wrapped};
use picket_common::links::{device_key, wrap, Link, Signer};
use picket_coordinator::click::Blocklist;
use picket_coordinator::store::{Store, UrlBlock};
use picket_coordinator::{Config, Coordinator};
use picket_e2e::dovecot::Dovecot;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Blocklist entries (half exact links, half domains).
    #[arg(long, default_value_t = 100_000)]
    blocks: usize,
    /// How long the clients click.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent HTTPS keep-alive clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Messages per rewrite measurement.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// The release binaries (picket-linkwrap).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// A newsletter: `links` links in plain text and in HTML, ~100 KB.
fn newsletter(links: usize) -> Vec<u8> {
    let mut plain = String::new();
    let mut html = String::from("<html><body><table>");
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ";
    for i in 0..links {
        plain.push_str(&format!("Item {i}: https://news.example/articles/{i}?utm_source=mail&utm_id={i}\r\n"));
        html.push_str(&format!(
            "<tr><td style=3D\"padding:4px\"><a href=3D\"https://news.example/articles/{i}?utm_source=3Dmail&amp;u=\r\n\
             tm_id=3D{i}\">Item {i}</a> {}</td></tr>\r\n",
            filler.repeat(2)
        ));
    }
    html.push_str("</table></body></html>");
    format!(
        "From: News <news@news.example>\r\nTo: staff@example.org\r\nSubject: Weekly digest\r\n\
         Message-ID: <digest-1@news.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n--b\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{html}\r\n--b--\r\n"
    )
    .into_bytes()
}

fn stats(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    format!("mean {mean:.2} ms, p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99))
}

fn rewrite(args: &Args) -> anyhow::Result<()> {
    let message = newsletter(300);
    println!("== rewrite: a {} KB message with 600 links (300 plain, 300 HTML)", message.len() / 1024);
    let key = [7u8; 32];
    let device = Uuid::new_v4();
    let mut times = Vec::new();
    for _ in 0..args.messages {
        let t = Instant::now();
        // As picket-linkwrap does: one signer per message, made at its first link.
        let mut signer: Option<Option<Signer>> = None;
        let mut sign = |id: &str, url: &str| {
            let s =
                signer.get_or_insert_with(|| Signer::new("https://click.example.org:7444", &key, device, "alice", id));
            s.as_ref()?.wrap(url)
        };
        let out = wrap_links(&message, &mut sign);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(matches!(out, Wrapped::Changed { links: 600, .. }), "expected 600 links wrapped");
    }
    println!("rewrite in process:            {}", stats(times));

    // The filter as Dovecot runs it: a process per delivery, the message on stdin.
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("link.key");
    std::fs::write(
        &key_file,
        format!(
            "click_url = \"https://click.example.org:7444\"\ndevice = \"{device}\"\nkey = \"{}\"\n",
            "07".repeat(32)
        ),
    )?;
    let linkwrap = std::fs::canonicalize(args.bin_dir.join("picket-linkwrap"))?;
    let run = |program: &std::path::Path, argv: &[&str]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let mut child = Command::new(program).args(argv).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().expect("stdin");
        let input = message.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output()?;
        writer.join().map_err(|_| anyhow::anyhow!("writer"))??;
        anyhow::ensure!(out.status.success() && !out.stdout.is_empty(), "{} failed", program.display());
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let key_arg = key_file.to_string_lossy().to_string();
    let mut filter = Vec::new();
    let mut cat = Vec::new();
    for _ in 0..args.messages {
        filter.push(run(&linkwrap, &["--key", &key_arg, "--to", "alice"])?);
        cat.push(run(std::path::Path::new("/bin/cat"), &[])?);
    }
    println!("picket-linkwrap process:       {}", stats(filter));
    println!("cat as the filter (baseline):  {}", stats(cat));

    // Delivery into a real Dovecot over LMTP, without and with the filter.
    let mail = Dovecot::start(&["alice".to_string()]);
    let deliver = |n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                mail.deliver("news@news.example", &["alice".to_string()], &message);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    let _warm = deliver(10);
    let plain = deliver(args.messages);
    // Any external filter at all: `cat` through the same Sieve mechanism.
    let noop_script = mail.path().join("sieve-before/40-noop.sieve");
    std::os::unix::fs::symlink("/bin/cat", mail.path().join("sieve-filters/noop"))?;
    std::fs::write(&noop_script, "require [\"vnd.dovecot.filter\"];\nfilter \"noop\";\n")?;
    let ok = Command::new("chown").arg("-R").arg("dovecot:dovecot").arg(mail.path().join("sieve-before")).status()?;
    anyhow::ensure!(ok.success());
    let _warm = deliver(10);
    let noop = deliver(args.messages);
    std::fs::remove_file(&noop_script)?;
    let key_for_dovecot = mail.path().join("picket-link.key");
    std::fs::copy(&key_file, &key_for_dovecot)?;
    let ok = Command::new("chown").arg("root:dovecot").arg(&key_for_dovecot).status()?;
    anyhow::ensure!(ok.success());
    mail.wrap_links(&linkwrap, &key_for_dovecot);
    let _warm = deliver(10);
    let wrapped = deliver(args.messages);
    // The wrapped deliveries really were wrapped (a filter that failed
    // would have let Dovecot deliver the message unchanged, and fast).
    let last_wrapped = |what: &str| -> anyhow::Result<()> {
        let mut imap = mail.imap("alice");
        let uids = imap.find("INBOX", "<digest-1@news.example>");
        let last = *uids.last().ok_or_else(|| anyhow::anyhow!("nothing delivered"))?;
        let raw = imap.raw(last);
        anyhow::ensure!(raw.contains("https://click.example.org:7444/l/v1/"), "{what}: not wrapped: {}", mail.log());
        Ok(())
    };
    last_wrapped("Sieve filter")?;
    std::fs::remove_file(mail.path().join("sieve-before/50-picket-linkwrap.sieve"))?;

    // The LMTP proxy in front of the same Dovecot (no Sieve filter now):
    // a persistent process, the MTA's connection to it, its own to Dovecot.
    // Two of them: with the key, and without one (it passes the message on
    // as it is: the hop alone). Deliveries go round robin — straight to
    // Dovecot, through each proxy — so the machine's drift (Dovecot, the
    // proxy and this client share two cores) weighs on all three alike.
    let wrapping = picket_e2e::dovecot::LinkProxy::start(&linkwrap, &mail, &key_file, None);
    let passing = picket_e2e::dovecot::LinkProxy::start(&linkwrap, &mail, &dir.path().join("no-such.key"), None);
    let (wrap_addr, pass_addr) = (wrapping.addr, passing.addr);
    let lmtp_at = |addr: std::net::SocketAddr| -> anyhow::Result<f64> {
        let t = Instant::now();
        let sent = picket_e2e::dovecot::lmtp(addr, "news@news.example", &["alice".to_string()], &message)
            .map_err(|e| anyhow::anyhow!("LMTP at {addr}: {e}"))?;
        anyhow::ensure!(sent.data.iter().all(|r| r.starts_with("250")), "{sent:?}");
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let direct_addr = std::net::SocketAddr::from(([127, 0, 0, 1], mail.lmtp));
    // And the message as the proxy makes it, straight to Dovecot: what
    // storing the larger wrapped message costs Dovecot, in any design.
    let mut signer: Option<Option<Signer>> = None;
    let mut sign = |id: &str, url: &str| {
        let s = signer.get_or_insert_with(|| Signer::new("https://click.example.org:7444", &key, device, "alice", id));
        s.as_ref()?.wrap(url)
    };
    let Wrapped::Changed { message: prewrapped, .. } = wrap_links(&message, &mut sign) else {
        anyhow::bail!("the newsletter was not wrapped");
    };
    let lmtp_bytes = |bytes: &[u8]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let sent = picket_e2e::dovecot::lmtp(direct_addr, "news@news.example", &["alice".to_string()], bytes)
            .map_err(|e| anyhow::anyhow!("LMTP: {e}"))?;
        anyhow::ensure!(sent.data.iter().all(|r| r.starts_with("250")), "{sent:?}");
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let (mut direct, mut hop, mut proxied, mut stored) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.messages + 10 {
        let (d, h) = (lmtp_at(direct_addr)?, lmtp_at(pass_addr)?);
        let (w, b) = (lmtp_at(wrap_addr)?, lmtp_bytes(&prewrapped)?);
        if i >= 10 {
            direct.push(d);
            hop.push(h);
            proxied.push(w);
            stored.push(b);
        }
    }
    last_wrapped("LMTP proxy")?;
    drop((wrapping, passing));

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let added = mean(&wrapped) - mean(&plain);
    let over_noop = mean(&wrapped) - mean(&noop);
    let noop_cost = mean(&noop) - mean(&plain);
    let hop_cost = mean(&hop) - mean(&direct);
    let proxy_added = mean(&proxied) - mean(&direct);
    let bigger = mean(&stored) - mean(&direct);
    let proxy_own = mean(&proxied) - mean(&stored);
    println!("LMTP delivery, no filter:      {}", stats(plain));
    println!("LMTP delivery, cat as filter:  {}", stats(noop));
    println!("LMTP delivery, links wrapped:  {}", stats(wrapped));
    println!("any external filter costs:     {noop_cost:.2} ms per delivery (Dovecot running cat)");
    println!("Sieve filter wrapping adds:    {added:.2} ms in all, {over_noop:.2} ms over cat (goal <= 5 ms)");
    println!("-- round robin, straight to Dovecot and through the LMTP proxy:");
    println!("LMTP delivery, no proxy:       {}", stats(direct));
    println!("through the proxy, no key:     {}", stats(hop));
    println!("through the proxy, wrapped:    {}", stats(proxied));
    println!("the wrapped message, no proxy: {}", stats(stored));
    println!("the proxy's hop costs:         {hop_cost:.2} ms per delivery");
    println!("Dovecot storing the larger wrapped message costs {bigger:.2} ms; the proxy's own part {proxy_own:.2} ms");
    println!("LMTP proxy wrapping adds:      {proxy_added:.2} ms in all (goal <= 5 ms)");
    Ok(())
}

async fn clicks(args: &Args) -> anyhow::Result<()> {
    println!("== clicks: {} blocklist entries, {} clients, {} s", args.blocks, args.clients, args.seconds);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("coordinator");
    std::fs::create_dir_all(&data)?;
    let device = Uuid::new_v4();
    let url = format!("sqlite://{}?mode=rwc", data.join("coordinator.db").display());
    let store = Store::connect(&url).await?;
    let now = picket_coordinator::clock::now_ms();
    let blocks: Vec<UrlBlock> = (0..args.blocks)
        .map(|i| UrlBlock {
            id: Uuid::new_v4(),
            device_id: device,
            match_kind: if i % 2 == 0 { "exact" } else { "domain" }.into(),
            value: if i % 2 == 0 { format!("https://bad{i}.example/login?id={i}") } else { format!("evil{i}.example") },
            comment: "bench".into(),
            created_by: "bench".into(),
            created_at: now,
            expires_at: None,
        })
        .collect();
    let t = Instant::now();
    for chunk in blocks.chunks(10_000) {
        store.insert_url_blocks(chunk).await?;
    }
    println!("blocklist stored in {:.1} s", t.elapsed().as_secs_f64());

    // The lookup alone.
    let list = Blocklist::new(store.url_blocks().await?);
    store.close().await;
    let probes: Vec<String> = (0..10_000)
        .map(|i| match i % 4 {
            0 => format!("https://bad{}.example/login?id={}", i * 2 % args.blocks, i * 2 % args.blocks),
            1 => format!("https://www.evil{}.example/x", (i * 2 + 1) % args.blocks),
            _ => format!("https://fine{i}.example/page/{i}"),
        })
        .collect();
    let t = Instant::now();
    let mut hits = 0usize;
    for _ in 0..20 {
        hits += probes.iter().filter(|p| list.check(device, p, now).is_some()).count();
    }
    let lookups = 20.0 * probes.len() as f64;
    println!("blocklist lookups in process:  {:.0}/s ({hits} hits)", lookups / t.elapsed().as_secs_f64());

    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut config = Config {
        data_dir: data.clone(),
        agent_listen: "127.0.0.1:0".parse()?,
        api_listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    config.click.listen = Some("127.0.0.1:0".parse()?);
    config.click.max_clicks_per_minute = u32::MAX;
    config.investigations.automatic = false;
    let coordinator = Coordinator::start(config, shutdown.clone()).await?;
    let base = coordinator.click_url.clone().expect("click listener");
    let secret = hex::decode(std::fs::read_to_string(data.join("click.key"))?.trim())?;
    let key = device_key(&secret, device);
    let links: Vec<(String, bool)> = (0..1000)
        .map(|i| {
            let (url, blocked) = match i % 4 {
                0 => (format!("https://bad{}.example/login?id={}", i * 2 % args.blocks, i * 2 % args.blocks), true),
                1 => (format!("https://www.evil{}.example/x", (i * 2 + 1) % args.blocks), true),
                _ => (format!("https://fine{i}.example/page/{i}"), false),
            };
            let link = Link { url, device, recipient: format!("user{i}"), message_id: format!("m{i}@x") };
            (wrap(&base, &key, &link).expect("wraps"), blocked)
        })
        .collect();
    let ca = std::fs::read(data.join("pki/ca.pem"))?;
    let tls = picket_coordinator::client::Client::with_ca(&base, "", &ca)?.tls_config();
    let links = Arc::new(links);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.clients)
        .map(|c| {
            let (links, stop, done, wrong, tls) =
                (links.clone(), stop.clone(), done.clone(), wrong.clone(), tls.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .tls_config(tls)
                    .build()
                    .into();
                let mut latencies = Vec::new();
                let mut i = c * 7;
                while !stop.load(Ordering::Relaxed) {
                    let (link, blocked) = &links[i % links.len()];
                    i += 1;
                    let t = Instant::now();
                    let status = agent.get(link).call().map(|mut r| {
                        let _ = r.body_mut().read_to_vec();
                        r.status().as_u16()
                    });
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    let want = if *blocked { 403 } else { 302 };
                    if status.ok() != Some(want) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().map_err(|_| anyhow::anyhow!("client thread"))?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    println!(
        "click listener:                {:.0} checks/s over HTTPS keep-alive ({total} clicks, {} wrong answers; goal >= 10000/s)",
        total as f64 / elapsed,
        wrong.load(Ordering::Relaxed)
    );
    println!("click latency:                 {}", stats(latencies));
    // Every click is in the log (written in batches behind the answers).
    let store = coordinator.store.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut logged = 0;
    while Instant::now() < deadline {
        logged = sqlx_count(&store).await?;
        if logged >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("click log:                     {logged} of {total} clicks recorded");
    shutdown.cancel();
    coordinator.join().await;
    Ok(())
}

async fn sqlx_count(store: &Store) -> anyhow::Result<u64> {
    Ok(u64::try_from(store.click_count().await?).unwrap_or(0))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rewrite(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(clicks(&args))
}
