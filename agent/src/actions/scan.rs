//! `scan {mode: quick | full | paths, paths, cpu_percent, max_file_size}`:
//! an antivirus scan with the device's rules and indicators. Re-runnable (it
//! only reads). Progress is reported as it runs; each detection is raised as
//! an alert (source `scan:<action id>`) as it is found; the result is the
//! summary with every detection.

use std::path::PathBuf;

use picket_common::actions::params::{self, ScanMode as Mode};
use picket_common::actions::results::ScanOutput;
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::platform::Feature;
use crate::scan::{self, targets, ScanOptions, ScanProgress};

pub struct Scan;

impl Action for Scan {
    const KIND: ActionKind = ActionKind::Scan;
    const NEEDS: &'static [Feature] = &[Feature::Files];
    type Params = params::Scan;
    type Output = ScanOutput;

    fn run(&self, p: params::Scan, run: &Run<'_>) -> Result<ScanOutput, ActionFailure> {
        scan_with(p, run)
    }
}

fn scan_with(p: params::Scan, run: &Run<'_>) -> Result<ScanOutput, ActionFailure> {
    let (ctx, progress) = (run.ctx, run.progress);
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
    Ok(ScanOutput {
        summary,
        mode: format!("{mode:?}").to_lowercase(),
        rules_loaded: engine.rule_count,
        rules_version: ctx.content.state().rules_version,
    })
}
