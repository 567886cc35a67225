//! `collect_evidence {path, sha256?, size?, search_paths?, copies?,
//! budget_secs?, budget_bytes?}` (read-only, for investigations): the file
//! (exists? its SHA-256, size, owner, mode, mtime, whether a package owns
//! it), the processes running it with their parents and network
//! connections, the persistence that references it, and — unless `copies`
//! is false — other copies with the same SHA-256 (in the quick-scan places,
//! or `search_paths`), only files of the file's size read, within the time
//! and byte budget (default 120 s, 8 GiB), with progress; the result says
//! how far the search went.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use picket_common::actions::params;
use picket_common::actions::results::{
    EvidenceFile, EvidenceOutput, EvidencePersistence, EvidenceProcess, Socket, TempPersistence, TempProcess,
};
use picket_common::actions::ActionKind;

use super::{Action, ActionFailure, Run};
use crate::fsutil::{Dir, Owners};
use crate::platform::linux::persistence;
use crate::platform::{Feature, Platform};

pub struct CollectEvidence;

impl Action for CollectEvidence {
    const KIND: ActionKind = ActionKind::CollectEvidence;
    const NEEDS: &'static [Feature] = &[Feature::Files, Feature::Processes];
    type Params = params::CollectEvidence;
    type Output = EvidenceOutput;

    fn run(&self, p: params::CollectEvidence, run: &Run<'_>) -> Result<EvidenceOutput, ActionFailure> {
        Ok(evidence(p, run))
    }
}

/// The sockets `pid` holds.
fn held_by(sockets: &[Socket], pid: i32) -> Vec<Socket> {
    sockets.iter().filter(|s| s.pid == Some(pid)).cloned().collect()
}

fn evidence(p: params::CollectEvidence, run: &Run<'_>) -> EvidenceOutput {
    let (platform, ctx, progress) = (run.platform, run.ctx, run.progress);
    progress.report("examining the file", 10);
    // Opened as quarantine would open it: no untrusted link on the way.
    let opened = Dir::open_parent(&p.path, Owners::Any).ok().and_then(|(dir, name)| dir.open_file(&name).ok());
    let meta = opened.as_ref().and_then(|f| f.metadata().ok());
    let actual = opened.as_ref().and_then(|f| crate::fsutil::hash::sha256_open(f).ok().map(|(h, _)| h));
    let sha256 = p.sha256.clone().map(|s| s.to_ascii_lowercase()).or_else(|| actual.clone());
    let file = EvidenceFile {
        path: p.path.clone(),
        exists: meta.is_some(),
        sha256: actual,
        size: meta.as_ref().map(|m| m.len()),
        uid: meta.as_ref().map(|m| m.uid()),
        mode: meta.as_ref().map(|m| format!("{:o}", m.mode() & 0o7777)),
        mtime: meta.as_ref().map(|m| m.mtime()),
        package: platform.package_owner(&p.path).ok().flatten(),
    };
    progress.report("processes", 30);
    let mut pids = match &sha256 {
        Some(h) => platform.processes_running(h).unwrap_or_default(),
        None => Vec::new(),
    };
    pids.sort_unstable();
    let sockets = crate::platform::linux::procfs::sockets();
    let running: std::collections::HashMap<i32, crate::sysinfo::ProcessFacts> =
        crate::sysinfo::processes().into_iter().map(|p| (p.pid, p)).collect();
    let executable = |pid: i32| running.get(&pid).and_then(|p| p.executable());
    let processes = pids
        .iter()
        .map(|&pid| {
            let parent = running.get(&pid).and_then(|p| p.ppid);
            EvidenceProcess {
                pid,
                executable: executable(pid),
                ppid: parent,
                parent_executable: parent.and_then(executable),
                connections: held_by(&sockets, pid),
            }
        })
        .collect();
    progress.report("persistence", 50);
    let persistence = persistence::find(&ctx.persistence_root, &p.path)
        .into_iter()
        .map(|r| EvidencePersistence { what: r.describe(), removal: r })
        .collect();
    let size = p.size.or(meta.as_ref().map(|m| m.len()));
    let mut copies_search = None;
    let copies: Vec<PathBuf> = match &sha256 {
        Some(h) if p.copies => {
            progress.report("other copies", 70);
            let scope = if ctx.evidence_search_paths.is_empty() { &p.search_paths } else { &ctx.evidence_search_paths };
            let default = crate::scan::copies::Budget::default();
            let budget = crate::scan::copies::Budget {
                time: p.budget_secs.map(std::time::Duration::from_secs).unwrap_or(default.time),
                bytes: p.budget_bytes.unwrap_or(default.bytes),
            };
            let report = |files: u64, bytes: u64| {
                progress.report(&format!("other copies: {files} files looked at, {} MiB read", bytes >> 20), 70)
            };
            let found = super::stop_and_quarantine::copies(ctx, h, size, scope, budget, &report);
            let paths = found.paths.iter().filter(|c| **c != p.path).cloned().collect();
            copies_search = Some(found);
            paths
        }
        _ => Vec::new(),
    };
    progress.report("heuristics", 90);
    EvidenceOutput {
        file,
        processes,
        persistence,
        copies,
        copies_search,
        temp_processes: temp_processes(platform, running.values(), &sockets, &p.temp_folders, &pids),
        temp_persistence: persistence::pointing_into(&ctx.persistence_root, &p.temp_folders)
            .into_iter()
            .filter(|(path, _)| Path::new(path) != p.path)
            .map(|(path, named_in)| TempPersistence { path, named_in })
            .collect(),
    }
}

/// Processes (other than `skip`) running a non-package executable from a
/// temp folder while holding network sockets: suspicious by heuristic.
fn temp_processes<'a>(
    platform: &dyn Platform,
    running: impl Iterator<Item = &'a crate::sysinfo::ProcessFacts>,
    sockets: &[Socket],
    temp: &[String],
    skip: &[i32],
) -> Vec<TempProcess> {
    let inside = |p: &str| temp.iter().any(|f| picket_common::persistence::inside(p, f));
    let mut out = Vec::new();
    for process in running {
        let pid = process.pid;
        if skip.contains(&pid) || pid as u32 == std::process::id() {
            continue;
        }
        let Some(exe) = process.exe.as_ref().map(|e| e.display().to_string()) else { continue };
        if !inside(&exe) {
            continue;
        }
        let connections = held_by(sockets, pid);
        if connections.is_empty() || platform.package_owner(Path::new(&exe)).ok().flatten().is_some() {
            continue;
        }
        let sha256 = crate::platform::linux::exe_sha256(pid);
        out.push(TempProcess { pid, executable: exe, sha256, connections });
    }
    out.sort_unstable_by_key(|t| t.pid);
    out
}
