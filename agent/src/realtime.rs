//! Real-time protection: watch directories (recursively, through inotify by
//! way of `notify`) and scan each new or changed file once it has been quiet
//! for the debounce interval; a detection is queued as an alert at once.
//!
//! Runs on its own thread (watch events arrive on a channel; scanning is
//! synchronous and must not hold up the session). Limits, stated plainly:
//! - inotify needs one watch per directory; when `fs.inotify.max_user_watches`
//!   runs out, the agent logs a warning naming the directory that is not
//!   covered (raise the sysctl), and keeps protecting the rest;
//! - a file written and executed within the debounce interval may run before
//!   it is scanned (blocking that is `restrict_code`'s job, via fanotify);
//! - files larger than the size cap are not scanned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertQueue;
use crate::content::Content;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    pub enabled: bool,
    /// Directories watched recursively. `*` as a whole path component
    /// matches every directory there (`/home/*/Downloads`).
    pub paths: Vec<String>,
    /// A file is scanned once no event touched it for this long.
    pub debounce_ms: u64,
    /// Larger files are not scanned.
    pub max_file_size: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: ["/tmp", "/var/tmp", "/dev/shm", "/root/Downloads", "/home/*/Downloads"].map(String::from).to_vec(),
            debounce_ms: 300,
            max_file_size: 256 * 1024 * 1024,
        }
    }
}

/// Expand `*` components against the directories that exist now.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/")];
    for part in Path::new(pattern).components().skip(1) {
        let part = part.as_os_str();
        let mut next = Vec::new();
        for base in &out {
            if part == "*" {
                if let Ok(rd) = std::fs::read_dir(base) {
                    next.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
            } else {
                next.push(base.join(part));
            }
        }
        out = next;
    }
    out.into_iter().filter(|p| p.is_dir()).collect()
}

/// Start the watcher thread; it stops when `shutdown` is cancelled.
/// `skip` is never scanned (the agent's own state dir).
pub fn spawn(
    config: RealtimeConfig,
    content: Arc<Content>,
    alerts: Arc<AlertQueue>,
    skip: PathBuf,
    shutdown: CancellationToken,
) -> Option<std::thread::JoinHandle<()>> {
    if !config.enabled {
        tracing::info!("real-time protection is off in the configuration");
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("picket-realtime".into())
        .spawn(move || run(&config, &content, &alerts, &skip, &shutdown));
    match spawned {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::error!(%error, "REAL-TIME PROTECTION IS OFF: cannot start its thread");
            None
        }
    }
}

fn run(config: &RealtimeConfig, content: &Content, alerts: &AlertQueue, skip: &Path, shutdown: &CancellationToken) {
    let (tx, rx) = channel();
    let mut watcher = match notify::recommended_watcher(tx) {
        Ok(w) => w,
        Err(error) => {
            tracing::error!(%error, "REAL-TIME PROTECTION IS OFF: cannot start watching");
            return;
        }
    };
    let mut watched = 0;
    for pattern in &config.paths {
        for dir in expand(pattern) {
            match watcher.watch(&dir, RecursiveMode::Recursive) {
                Ok(()) => {
                    watched += 1;
                    tracing::info!(dir = %dir.display(), "real-time protection watching");
                }
                Err(e) => warn_watch_error(&e, Some(&dir)),
            }
        }
    }
    if watched == 0 {
        tracing::warn!(paths = ?config.paths, "real-time protection has no directory to watch");
    }
    let owners = crate::platform::linux::users::names();
    let debounce = Duration::from_millis(config.debounce_ms.max(10));
    let mut due: HashMap<PathBuf, Instant> = HashMap::new();
    while !shutdown.is_cancelled() {
        match rx.recv_timeout(debounce.min(Duration::from_millis(200))) {
            Ok(Ok(event)) => {
                if touches_content(&event.kind) {
                    for path in event.paths {
                        if !path.starts_with(skip) {
                            due.insert(path, Instant::now() + debounce);
                        }
                    }
                }
            }
            Ok(Err(e)) => warn_watch_error(&e, None),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let ready: Vec<PathBuf> = due.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
        for path in ready {
            due.remove(&path);
            scan_one(&path, config.max_file_size, &owners, content, alerts);
        }
    }
    tracing::info!("real-time protection stopped");
}

fn touches_content(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

fn warn_watch_error(e: &notify::Error, dir: Option<&Path>) {
    let dir = dir.or(e.paths.first().map(PathBuf::as_path)).map(|d| d.display().to_string()).unwrap_or_default();
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => tracing::warn!(
            dir,
            "inotify watch limit reached: real-time protection does not cover all of this directory; \
             raise fs.inotify.max_user_watches"
        ),
        _ => tracing::warn!(error = %e, dir, "real-time protection watch error"),
    }
}

fn scan_one(path: &Path, max: u64, owners: &HashMap<u32, String>, content: &Content, alerts: &AlertQueue) {
    // Never follow a symlink, never open a fifo or device.
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if !meta.is_file() || meta.len() > max {
        return;
    }
    let engine = content.engine();
    let mut scanner = engine.scanner();
    let owner = {
        use std::os::unix::fs::MetadataExt;
        owners.get(&meta.uid()).cloned().unwrap_or_else(|| meta.uid().to_string())
    };
    let result = if meta.len() <= 32 * 1024 * 1024 {
        std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|data| engine.scan_data(&mut scanner, path, &data, &owner))
    } else {
        engine.scan_path(&mut scanner, path, &owner)
    };
    match result {
        Ok(detections) => alerts.raise("realtime", detections),
        Err(error) => tracing::debug!(%error, path = %path.display(), "real-time scan skipped a file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_to_existing_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        for user in ["ann", "bob"] {
            std::fs::create_dir_all(dir.path().join(user).join("Downloads")).expect("mkdir");
        }
        std::fs::create_dir_all(dir.path().join("cy")).expect("mkdir");
        let mut found = expand(&format!("{}/*/Downloads", dir.path().display()));
        found.sort();
        assert_eq!(found, vec![dir.path().join("ann/Downloads"), dir.path().join("bob/Downloads")]);
        assert!(expand("/no/such/dir").is_empty());
    }
}
