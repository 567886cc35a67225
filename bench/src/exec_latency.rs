//! Exec latency with and without code restriction: N runs of /usr/bin/true,
//! timed one by one. Run it through `bench/run-restrict.sh`, which starts it
//! in a private mount namespace where /usr/bin is bind-mounted onto itself,
//! so only this namespace's execs are watched (needs root).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use picket_agent::platform::linux::restrict;
use picket_agent::platform::RestrictPolicy;

fn measure(runs: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new("/usr/bin/true").status().expect("exec /usr/bin/true");
        assert!(status.success(), "/usr/bin/true failed: {status}");
        out.push(start.elapsed());
    }
    out.sort();
    out
}

fn report(label: &str, d: &[Duration]) -> f64 {
    let pct = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)].as_secs_f64() * 1e6;
    let mean = d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len() as f64 * 1e6;
    println!(
        "{label:<22} runs {:>5}  mean {mean:>7.0} µs  p50 {:>7.0} µs  p99 {:>7.0} µs",
        d.len(),
        pct(0.5),
        pct(0.99)
    );
    mean
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let scope = vec![PathBuf::from("/usr/bin")];
    // Warm the page cache and the dynamic loader's files.
    measure(50);
    let mut plain = Vec::new();
    let mut restricted = Vec::new();
    // Alternate rounds so both see the same machine noise.
    for _ in 0..4 {
        plain.extend(measure(runs / 4));
        let policy = RestrictPolicy { scope: scope.clone(), ..RestrictPolicy::default() };
        restrict::apply(&policy, Arc::new(|b| eprintln!("unexpected block: {b:?}"))).expect("restrict (root?)");
        restricted.extend(measure(runs / 4));
        restrict::release();
    }
    plain.sort();
    restricted.sort();
    let a = report("without restriction", &plain);
    let b = report("with restriction", &restricted);
    println!("restriction adds {:.0} µs per exec on average ({:.2}x)", b - a, b / a);
}
