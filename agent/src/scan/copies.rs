//! Other copies of a file, by SHA-256.
//!
//! When the size is known only files of exactly that size are read, so a
//! home directory of many gigabytes costs a walk, not a read. The search
//! stays within a time and byte budget (an investigation must not hold a
//! device's disk for minutes; what was not searched is said in the
//! result), runs at lowered CPU and I/O priority, never follows a link,
//! and skips pseudo and network file systems and the agent's own state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ignore::WalkBuilder;

/// How far a search may go.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub time: Duration,
    /// Bytes read for hashing.
    pub bytes: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { time: Duration::from_secs(120), bytes: 8 * 1024 * 1024 * 1024 }
    }
}

/// What a search found, and how much of the places it covered.
pub use picket_common::actions::results::CopiesSearch as Copies;

/// What to look for, and where.
pub struct Query<'a> {
    pub roots: &'a [PathBuf],
    /// Lowercase hex.
    pub sha256: &'a str,
    /// Only files of this size are read, when it is known.
    pub size: Option<u64>,
    /// Subtrees never entered.
    pub skip: &'a [PathBuf],
    pub budget: Budget,
}

/// Look for files with the query's content. `progress` gets (files seen,
/// bytes hashed) every thousand files. Runs on a thread of its own at
/// lowered priority (the caller's thread keeps its own).
pub fn find(q: &Query<'_>, progress: &(dyn Fn(u64, u64) + Sync)) -> Copies {
    std::thread::scope(|s| {
        let search = s.spawn(|| {
            crate::platform::lower_current_thread();
            search(q, progress)
        });
        search.join().unwrap_or_else(|_| Copies { stopped: Some("the search failed".into()), ..Copies::default() })
    })
}

fn search(q: &Query<'_>, progress: &(dyn Fn(u64, u64) + Sync)) -> Copies {
    let (roots, sha256, size, skip, budget) = (q.roots, q.sha256, q.size, q.skip, q.budget);
    let started = Instant::now();
    let mut out = Copies::default();
    let existing: Vec<&PathBuf> = roots.iter().filter(|r| std::fs::symlink_metadata(r).is_ok()).collect();
    let Some((first, rest)) = existing.split_first() else {
        out.complete = true;
        return out;
    };
    let mut builder = WalkBuilder::new(first);
    for r in rest {
        builder.add(r);
    }
    let skip: Vec<PathBuf> = skip.to_vec();
    builder.standard_filters(false).follow_links(false).filter_entry(move |e| !skip.iter().any(|s| e.path() == s));
    let mut seen = std::collections::HashSet::new();
    out.complete = true;
    for entry in builder.build().flatten() {
        if entry.file_type().is_none_or(|t| !t.is_file()) {
            continue;
        }
        if started.elapsed() > budget.time {
            out.stopped = Some(format!("time budget of {} s reached", budget.time.as_secs()));
            out.complete = false;
            break;
        }
        let Ok(meta) = entry.metadata() else { continue };
        out.files_seen += 1;
        if out.files_seen % 1000 == 0 {
            progress(out.files_seen, out.bytes_hashed);
        }
        if size.is_some_and(|s| s != meta.len()) {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        if out.bytes_hashed.saturating_add(meta.len()) > budget.bytes {
            out.stopped = Some(format!("byte budget of {} bytes reached", budget.bytes));
            out.complete = false;
            break;
        }
        let Ok(hash) = crate::fsutil::hash::sha256_path(entry.path()) else { continue };
        out.files_hashed += 1;
        out.bytes_hashed += meta.len();
        if hash == sha256 {
            out.paths.push(entry.path().to_path_buf());
        }
    }
    out.paths.sort();
    out.seconds = started.elapsed().as_secs_f64();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_files_only_are_read_and_the_budget_stops_the_search() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("a/b")).expect("mkdir");
        std::fs::write(t.path().join("a/one"), b"needle").expect("write");
        std::fs::write(t.path().join("a/b/two"), b"needle").expect("write");
        std::fs::write(t.path().join("a/other"), b"needlx").expect("write");
        std::fs::write(t.path().join("a/big"), vec![0u8; 4096]).expect("write");
        std::os::unix::fs::symlink(t.path().join("a/one"), t.path().join("a/link")).expect("link");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"needle"));
        let roots = [t.path().to_path_buf()];
        let q = |size, budget| Query { roots: &roots, sha256: &sha, size, skip: &[], budget };
        let found = find(&q(Some(6), Budget::default()), &|_, _| {});
        assert_eq!(found.paths, vec![t.path().join("a/b/two"), t.path().join("a/one")]);
        assert_eq!((found.files_hashed, found.bytes_hashed, found.complete), (3, 18, true));
        // Size unknown: everything is read; a byte budget stops it.
        let found = find(&q(None, Budget { time: Duration::from_secs(60), bytes: 10 }), &|_, _| {});
        assert!(!found.complete && found.stopped.as_deref().is_some_and(|s| s.contains("byte budget")));
        let found = find(&q(None, Budget { time: Duration::ZERO, bytes: 1 << 30 }), &|_, _| {});
        assert!(!found.complete && found.stopped.as_deref().is_some_and(|s| s.contains("time budget")));
    }
}
