//! Code restriction with fanotify `FAN_OPEN_EXEC_PERM`.
//!
//! Every exec of a file on a marked mount waits for our answer. Allowed:
//! - the agent's own executable;
//! - a file under an allowed path prefix, or whose SHA-256 is allowed;
//! - a file an installed package owns *and* that is unchanged: its MD5
//!   equals the one dpkg recorded in `/var/lib/dpkg/info/*.md5sums` (both
//!   `/usr/bin/x` and `/bin/x` spellings, for merged-/usr systems).
//!
//! Everything else gets EPERM and is reported (path, SHA-256, pid, uid).
//! Decisions are cached by (device, inode, mtime, ctime, size), so a
//! modified file is judged again. One thread answers, sequentially; it never
//! starts a process itself (that exec would wait on its own answer).
//!
//! Limits, stated plainly: only execve of a file is checked — a script run
//! as `sh script.sh` or `python x.py` runs under an allowed interpreter; a
//! program mapped by the dynamic loader (`ld.so ./prog`), memfd executables
//! and `mmap(PROT_EXEC)` are not exec opens; files hashed per exec the
//! first time (the answer takes as long as reading the file); when the
//! agent stops, the kernel lets pending and later execs through until it
//! restarts and re-applies the restriction; rpm-based systems have no
//! package check yet (only the allow list and the agent itself run).

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::fanotify::{ExecEvent, Fanotify};
use crate::platform::{BlockedExec, PlatformError, RestrictPolicy};

type OnBlock = Arc<dyn Fn(BlockedExec) + Send + Sync>;

struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

static ACTIVE: Mutex<Option<Running>> = Mutex::new(None);

/// File systems never marked (no programs live there, or they are remote).
const SKIP_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devtmpfs",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "9p",
    "efivarfs",
];

/// (mount point, fs type) of this mount namespace.
fn mounts() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((PathBuf::from(unescape(f.get(4)?)), f.get(sep + 1)?.to_string()))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts to mark: `scope` (each must be a mount point), or every local
/// file system when `scope` is empty.
fn scope_mounts(scope: &[PathBuf]) -> Result<Vec<PathBuf>, PlatformError> {
    let all = mounts();
    if scope.is_empty() {
        let mut out: Vec<PathBuf> = all
            .into_iter()
            .filter(|(_, fs)| !SKIP_FS.contains(&fs.as_str()) && !fs.starts_with("fuse"))
            .map(|(p, _)| p)
            .collect();
        out.sort();
        out.dedup();
        return Ok(out);
    }
    for s in scope {
        if !all.iter().any(|(p, _)| p == s) {
            return Err(PlatformError::Invalid(format!(
                "{} is not a mount point: restriction marks whole mounts, so its scope must name them",
                s.display()
            )));
        }
    }
    Ok(scope.to_vec())
}

/// dpkg's recorded MD5 per absolute path.
fn package_md5s() -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/var/lib/dpkg/info") else { return out };
    for e in rd.flatten() {
        if e.path().extension().is_none_or(|x| x != "md5sums") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        for line in text.lines() {
            if let Some((md5, path)) = line.split_once("  ") {
                out.insert(format!("/{}", path.trim_start_matches('/')), md5.to_string());
            }
        }
    }
    out
}

struct Judge {
    policy: RestrictPolicy,
    allow_sha: HashSet<String>,
    packages: HashMap<String, String>,
    own: Option<(u64, u64)>,
    /// Verdicts by file version: `None` allowed, `Some(sha256)` denied.
    cache: HashMap<(u64, u64, i64, i64, u64), Option<String>>,
}

impl Judge {
    fn decide(&mut self, ev: &ExecEvent) -> (bool, Option<BlockedExec>) {
        let fd = ev.file.as_raw_fd();
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{fd}")) else {
            return (false, None);
        };
        if Some((meta.dev(), meta.ino())) == self.own {
            return (true, None);
        }
        if self.policy.allow_paths.iter().any(|p| path.starts_with(p)) {
            return (true, None);
        }
        let key = (
            meta.dev(),
            meta.ino(),
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            meta.size(),
        );
        let blocked = |sha256: String| BlockedExec {
            path: path.clone(),
            sha256,
            size: meta.size(),
            pid: ev.pid,
            uid: uid_of(ev.pid),
        };
        if let Some(verdict) = self.cache.get(&key) {
            return match verdict {
                None => (true, None),
                Some(sha256) => (false, Some(blocked(sha256.clone()))),
            };
        }
        let (sha256, md5) = match digests(&ev.file) {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot read an executable; denied");
                return (false, None);
            }
        };
        let alias = super::packages::merged_usr_alias(&path);
        let packaged = std::iter::once(path.as_path())
            .chain(alias.as_deref())
            .any(|candidate| self.packages.get(&candidate.display().to_string()).is_some_and(|m| *m == md5));
        if packaged || self.allow_sha.contains(&sha256) {
            self.cache.insert(key, None);
            return (true, None);
        }
        self.cache.insert(key, Some(sha256.clone()));
        (false, Some(blocked(sha256)))
    }
}

fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// SHA-256 and MD5 (what dpkg records) of the file, in one read.
fn digests(fd: &std::os::fd::OwnedFd) -> std::io::Result<(String, String)> {
    let file = std::fs::File::from(fd.try_clone()?);
    let (mut sha, mut md5) = (sha2::Sha256::new(), md5::Md5::new());
    crate::fsutil::hash::read_all(&file, |b| {
        sha.update(b);
        md5.update(b);
    })?;
    Ok((hex::encode(sha.finalize()), hex::encode(md5.finalize())))
}

/// Start (or replace) the restriction. The new group is marked before the
/// old one stops, so there is no gap. Returns what was marked.
pub fn apply(policy: &RestrictPolicy, on_block: OnBlock) -> Result<String, PlatformError> {
    let marks = scope_mounts(&policy.scope)?;
    let group = Fanotify::new().map_err(|e| PlatformError::Failed(format!("fanotify_init: {e} (needs root)")))?;
    for m in &marks {
        group.mark_mount(m).map_err(|e| PlatformError::Failed(format!("fanotify_mark {}: {e}", m.display())))?;
    }
    let own = std::fs::metadata("/proc/self/exe").ok().map(|m| (m.dev(), m.ino()));
    let packages = package_md5s();
    let known = packages.len();
    let judge = Judge {
        allow_sha: policy.allow_sha256.iter().map(|s| s.to_ascii_lowercase()).collect(),
        policy: policy.clone(),
        packages,
        own,
        cache: HashMap::new(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("picket-restrict".into())
            .spawn(move || answer(group, judge, on_block, &stop))
            .map_err(|e| PlatformError::Failed(format!("cannot start the restriction thread: {e}")))?
    };
    let old = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).replace(Running { stop, thread });
    if let Some(old) = old {
        old.stop.store(true, Ordering::SeqCst);
        let _ = old.thread.join();
    }
    let summary = format!(
        "exec restricted on {}: {} packaged files known, {} allowed hashes, {} allowed path prefixes",
        marks.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", "),
        known,
        policy.allow_sha256.len(),
        policy.allow_paths.len()
    );
    tracing::warn!("{summary}");
    Ok(summary)
}

fn answer(group: Fanotify, mut judge: Judge, on_block: OnBlock, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let events = match group.read(200) {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "fanotify read failed; restriction stopped");
                return;
            }
        };
        for ev in events {
            let (allow, blocked) = judge.decide(&ev);
            if let Err(error) = group.respond(&ev, allow) {
                tracing::error!(%error, "cannot answer an exec permission event");
            }
            if let Some(b) = blocked {
                tracing::warn!(path = %b.path.display(), sha256 = %b.sha256, pid = b.pid, uid = ?b.uid, "execution blocked");
                on_block(b);
            }
        }
    }
    // Dropping the group lets every exec through again.
}

/// Stop restricting. `false`: no restriction was active.
pub fn release() -> bool {
    let old = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).take();
    match old {
        Some(r) => {
            r.stop.store(true, Ordering::SeqCst);
            let _ = r.thread.join();
            true
        }
        None => false,
    }
}

/// Whether a restriction is active in this process.
pub fn active() -> bool {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert!(mounts().iter().any(|(p, _)| p == Path::new("/")));
        assert!(scope_mounts(&[PathBuf::from("/")]).is_ok());
        assert!(scope_mounts(&[PathBuf::from("/definitely/not/a/mount")]).is_err());
    }

    #[test]
    fn the_package_database_knows_coreutils() {
        if Path::new("/var/lib/dpkg/info/coreutils.md5sums").exists() {
            let db = package_md5s();
            assert!(db.contains_key("/bin/true") || db.contains_key("/usr/bin/true"));
        }
    }
}
