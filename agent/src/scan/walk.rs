//! The file walk: one walking thread feeding worker threads (one YARA-X
//! scanner each) through a bounded queue; symlinks never
//! followed, fifos / sockets / devices skipped without being opened, files
//! over the size cap skipped, each file scanned once even when roots
//! overlap, and one unreadable file never stops the scan.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ignore::WalkBuilder;

use super::engine::{Detection, Engine};

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are skipped (default 256 MiB).
    pub max_file_size: u64,
    /// Worker threads (default: all cores).
    pub threads: usize,
    /// Subtrees never entered (pseudo and network filesystems, the agent's vault).
    pub skip: Vec<PathBuf>,
    /// Run the walk and the workers at lowered CPU and I/O priority
    /// (background scans); the caller's own thread is never changed.
    pub low_priority: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: 256 * 1024 * 1024,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            skip: Vec::new(),
            low_priority: false,
        }
    }
}

impl ScanOptions {
    /// Threads for a CPU cap in percent of the cores (the field's default is 50).
    pub fn threads_for_cpu_percent(percent: u8) -> usize {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        (cores * usize::from(percent.clamp(1, 100)) / 100).max(1)
    }
}

/// Live counters, readable while the scan runs.
#[derive(Debug, Default)]
pub struct ScanProgress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
    pub detections: AtomicU64,
    /// Files and bytes the walk has queued so far.
    pub found_files: AtomicU64,
    pub found_bytes: AtomicU64,
    /// The walk has listed everything.
    pub walk_done: AtomicBool,
}

impl ScanProgress {
    /// Estimated share done, in percent: bytes scanned over bytes found.
    /// While the walk is still listing (it runs well ahead of the
    /// scanners), the estimate is capped at 90.
    pub fn estimated_percent(&self) -> u8 {
        let found = self.found_bytes.load(Ordering::Relaxed);
        let done = self.bytes.load(Ordering::Relaxed);
        let pct = done.saturating_mul(100).checked_div(found).unwrap_or(0);
        let cap = if self.walk_done.load(Ordering::Relaxed) { 100 } else { 90 };
        u8::try_from(pct.min(cap)).unwrap_or(100)
    }
}

pub use picket_common::actions::results::ScanSummary;

const ERROR_SAMPLES: usize = 20;

/// Files up to this size are read into memory whole (YARA-X's own mmap
/// threshold is 32 MB).
const READ_WHOLE_LIMIT: u64 = 32 * 1024 * 1024;

/// Scan `roots` (files or directories). `on_detection` is called as each
/// detection is found (real-time alerting, progress reports).
pub fn scan(
    engine: &Engine,
    roots: &[PathBuf],
    opts: &ScanOptions,
    progress: &ScanProgress,
    on_detection: &(dyn Fn(&Detection) + Sync),
) -> ScanSummary {
    let started = Instant::now();
    let owners = crate::platform::linux::users::names();
    let seen = Mutex::new(HashSet::<(u64, u64)>::new());
    let detections = Mutex::new(Vec::new());
    let error_samples = Mutex::new(Vec::new());
    let error = |msg: String| {
        progress.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = error_samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < ERROR_SAMPLES {
            samples.push(msg);
        }
    };
    let skip: HashSet<PathBuf> = opts.skip.iter().cloned().collect();
    let existing: Vec<&PathBuf> = roots.iter().filter(|r| std::fs::symlink_metadata(r).is_ok()).collect();
    for r in roots.iter().filter(|r| std::fs::symlink_metadata(r).is_err()) {
        error(format!("{}: does not exist", r.display()));
    }
    let Some((first, rest)) = existing.split_first() else {
        return summary(progress, detections, error_samples, started);
    };
    let mut builder = WalkBuilder::new(first);
    for r in rest {
        builder.add(r);
    }
    builder.standard_filters(false).follow_links(false);
    builder.filter_entry(move |e| !skip.contains(e.path()));
    // One thread walks (cheap); `threads` workers each own a YARA-X scanner
    // (scanners are not Send, so each is made on its worker) and pull files
    // from a bounded queue.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(PathBuf, std::fs::Metadata)>(1024);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            let (rx, seen, detections, owners, error) = (&rx, &seen, &detections, &owners, &error);
            s.spawn(move || {
                if opts.low_priority {
                    crate::platform::lower_current_thread();
                }
                let mut scanner = engine.scanner();
                loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((path, meta)) = next else { break };
                    if !seen.lock().unwrap_or_else(|p| p.into_inner()).insert((meta.dev(), meta.ino())) {
                        // Reached twice through overlapping roots: counted once.
                        progress.found_files.fetch_sub(1, Ordering::Relaxed);
                        progress.found_bytes.fetch_sub(meta.len(), Ordering::Relaxed);
                        continue;
                    }
                    scan_one(engine, &mut scanner, &path, &meta, owners, progress, detections, on_detection, error);
                }
            });
        }
        let error = &error;
        s.spawn(move || {
            if opts.low_priority {
                crate::platform::lower_current_thread();
            }
            walk(builder, opts, progress, error, tx);
        });
    });
    summary(progress, detections, error_samples, started)
}

/// List regular files under the roots into `tx` (the walking thread).
fn walk(
    builder: WalkBuilder,
    opts: &ScanOptions,
    progress: &ScanProgress,
    error: &dyn Fn(String),
    tx: std::sync::mpsc::SyncSender<(PathBuf, std::fs::Metadata)>,
) {
    for entry in builder.build() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                error(e.to_string());
                continue;
            }
        };
        let Some(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            // symlink, fifo, socket, device: never opened
            progress.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let path = entry.into_path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                error(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if meta.len() > opts.max_file_size {
            progress.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        progress.found_files.fetch_add(1, Ordering::Relaxed);
        progress.found_bytes.fetch_add(meta.len(), Ordering::Relaxed);
        if tx.send((path, meta)).is_err() {
            break;
        }
    }
    progress.walk_done.store(true, Ordering::Relaxed);
}

#[allow(clippy::too_many_arguments)]
fn scan_one(
    engine: &Engine,
    scanner: &mut yara_x::Scanner<'_>,
    path: &Path,
    meta: &std::fs::Metadata,
    owners: &HashMap<u32, String>,
    progress: &ScanProgress,
    detections: &Mutex<Vec<Detection>>,
    on_detection: &(dyn Fn(&Detection) + Sync),
    error: &dyn Fn(String),
) {
    let owner = owners.get(&meta.uid()).cloned().unwrap_or_else(|| meta.uid().to_string());
    // Small files are read once (hash and scan from one buffer); large ones
    // are hashed as a stream and memory-mapped for the scan, so a worker
    // never holds a large file in memory.
    let found = if meta.len() > READ_WHOLE_LIMIT {
        engine.scan_path(scanner, path, &owner)
    } else {
        match std::fs::read(path) {
            Ok(data) => engine.scan_data(scanner, path, &data, &owner),
            Err(e) => return error(format!("{}: {e}", path.display())),
        }
    };
    progress.files.fetch_add(1, Ordering::Relaxed);
    progress.bytes.fetch_add(meta.len(), Ordering::Relaxed);
    match found {
        Ok(found) => {
            for d in found {
                progress.detections.fetch_add(1, Ordering::Relaxed);
                on_detection(&d);
                detections.lock().unwrap_or_else(|p| p.into_inner()).push(d);
            }
        }
        Err(e) => error(format!("{}: {e}", path.display())),
    }
}

fn summary(
    progress: &ScanProgress,
    detections: Mutex<Vec<Detection>>,
    error_samples: Mutex<Vec<String>>,
    started: Instant,
) -> ScanSummary {
    let mut detections = detections.into_inner().unwrap_or_else(|p| p.into_inner());
    detections.sort_by(|a, b| (&a.path, &a.rule).cmp(&(&b.path, &b.rule)));
    ScanSummary {
        files: progress.files.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        detections,
        errors: progress.errors.load(Ordering::Relaxed),
        skipped: progress.skipped.load(Ordering::Relaxed),
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        error_samples: error_samples.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::engine::Indicators;

    fn eicar() -> Vec<u8> {
        let mut v = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR".to_vec();
        v.extend_from_slice(b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
        v
    }

    #[test]
    fn a_tree_with_traps_is_scanned_once_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).expect("dirs");
        std::fs::write(root.join("a/b/eicar.com"), eicar()).expect("eicar");
        std::fs::write(root.join("a/clean.txt"), b"hello").expect("clean");
        std::fs::write(root.join("big.bin"), vec![0u8; 4096]).expect("big");
        // A fifo would block a reader forever; a symlink to it and to the eicar file must not be followed.
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        std::os::unix::fs::symlink(root.join("a/b/eicar.com"), root.join("link-to-eicar")).expect("symlink");
        std::os::unix::fs::symlink("/proc/self/mem", root.join("link-out")).expect("symlink");
        let (engine, _) = Engine::load(&[], Indicators::default());
        let opts = ScanOptions { max_file_size: 1024, threads: 2, skip: vec![], low_priority: true };
        let progress = ScanProgress::default();
        let found = Mutex::new(0);
        // Overlapping roots: the file is still scanned once.
        let roots = [root.to_path_buf(), root.join("a"), root.join("missing")];
        let s = scan(&engine, &roots, &opts, &progress, &|_| *found.lock().expect("lock") += 1);
        assert_eq!(s.detections.len(), 1, "{s:?}");
        assert!(s.detections[0].path.ends_with("a/b/eicar.com"));
        assert_eq!(*found.lock().expect("lock"), 1);
        assert_eq!(s.files, 2, "eicar and clean; big.bin is over the cap");
        assert_eq!(s.skipped, 4, "fifo, two symlinks, big.bin");
        assert_eq!(s.errors, 1, "the missing root");
        assert_eq!(progress.estimated_percent(), 100);
        assert_eq!(progress.found_files.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn large_files_are_streamed_and_mapped_with_the_same_verdict() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("needle.yar"),
            "rule needle_at_end { strings: $n = \"needle-xyzzy\" condition: $n }",
        )
        .expect("rule");
        let mut big = vec![b'a'; (READ_WHOLE_LIMIT + 1024) as usize];
        big.extend_from_slice(b"needle-xyzzy");
        let target = dir.path().join("data");
        std::fs::create_dir(&target).expect("dir");
        std::fs::write(target.join("big.bin"), &big).expect("big");
        let (engine, errors) = Engine::load(&[dir.path().join("needle.yar")], Indicators::default());
        assert!(errors.is_empty(), "{errors:?}");
        let s = scan(&engine, &[target], &ScanOptions::default(), &ScanProgress::default(), &|_| {});
        assert_eq!(s.detections.len(), 1, "{s:?}");
        let d = &s.detections[0];
        assert_eq!(d.rule, "needle_at_end");
        assert_eq!(d.size, big.len() as u64);
        assert_eq!(d.sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&big)));
        assert_eq!(s.bytes, big.len() as u64);
    }

    #[test]
    fn skipped_subtrees_are_not_entered() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("vault")).expect("dir");
        std::fs::write(dir.path().join("vault/eicar.com"), eicar()).expect("eicar");
        let (engine, _) = Engine::load(&[], Indicators::default());
        let opts = ScanOptions { skip: vec![dir.path().join("vault")], ..ScanOptions::default() };
        let s = scan(&engine, &[dir.path().to_path_buf()], &opts, &ScanProgress::default(), &|_| {});
        assert!(s.detections.is_empty());
    }
}
