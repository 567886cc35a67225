//! `scan {mode: quick | full | paths, paths, cpu_percent, max_file_size}`:
//! an antivirus scan with the device's rules and indicators. Re-runnable (it
//! only reads). Progress is reported as it runs; each detection is raised as
//! an alert (source `scan:<action id>`) as it is found; the result is the
//! summary with every detection.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{ActionFailure, Context, Progress};
use crate::scan::{self, targets, ScanOptions, ScanProgress};

use picket_common::actions::params::{self as wire, ScanMode as Mode};
use picket_common::actions::ActionKind;

pub fn run(ctx: &Context, params: &str, progress: &Progress) -> Result<Value, ActionFailure> {
    let p: wire::Scan = wire::parse(ActionKind::Scan, params).map_err(ActionFailure::invalid)?;
    let mode = match (&p.mode, p.paths.is_empty()) {
        (Some(Mode::Paths) | None, false) => Mode::Paths,
        (Some(Mode::Paths) | None, true) => {
            return Err(ActionFailure::invalid("give mode quick or full, or paths to scan"))
        }
        (Some(Mode::Quick), true) => Mode::Quick,
        (Some(Mode::Full), true) => Mode::Full,
        (Some(_), false) => return Err(ActionFailure::invalid("paths go with mode \"paths\" only")),
    };
    if p.paths.iter().any(|p| !p.is_absolute()) {
        return Err(ActionFailure::invalid("paths must be absolute"));
    }
    let roots = match mode {
        Mode::Quick => targets::quick(),
        Mode::Full => vec![PathBuf::from("/")],
        Mode::Paths => p.paths,
    };
    let engine = ctx.content.engine();
    let source = format!("scan:{}", progress.action_id());
    let mut skip = targets::excluded_mounts();
    skip.push(ctx.state_dir.clone());
    let opts = ScanOptions {
        max_file_size: p.max_file_size.unwrap_or(ScanOptions::default().max_file_size),
        threads: ScanOptions::threads_for_cpu_percent(p.cpu_percent),
        skip,
        low_priority: true,
    };
    let counters = ScanProgress::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    let summary = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let files = counters.files.load(std::sync::atomic::Ordering::Relaxed);
                let mib = counters.bytes.load(std::sync::atomic::Ordering::Relaxed) / (1024 * 1024);
                let found = counters.detections.load(std::sync::atomic::Ordering::Relaxed);
                let phase = format!("scanned {files} files ({mib} MiB), {found} detections");
                progress.report(&phase, counters.estimated_percent());
            }
        });
        let summary = scan::scan(&engine, &roots, &opts, &counters, &|d| ctx.alerts.raise(&source, vec![d.clone()]));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        summary
    });
    let phase = format!("scanned {} files, {} detections", summary.files, summary.detections.len());
    progress.report(&phase, 100);
    let mut out = serde_json::to_value(&summary).map_err(|e| ActionFailure::error(e.to_string()))?;
    out["mode"] = json!(format!("{mode:?}").to_lowercase());
    out["rules_loaded"] = json!(engine.rule_count);
    out["rules_version"] = json!(ctx.content.state().rules_version);
    Ok(out)
}
