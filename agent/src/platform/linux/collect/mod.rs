//! The investigation package: a tar.gz of what a responder opens first.
//!
//! Folders: `system_info/`, `processes/`, `network/`, `users_and_groups/`,
//! `autoruns/`, `scheduled_tasks/`, `services/`, `installed_programs/`,
//! `kernel_modules/`, `open_files/`, `temp_directories/`, `logs/`,
//! `picket/`, plus `manifest.json` (every item: its source — a file, /proc,
//! or the exact command —, status, error, size, SHA-256; and the places not
//! collected, with why) and `summary.html` (highlights first).
//!
//! Rules: /proc and file reads first; a command only where it is the right
//! source (`nft list ruleset`, `dpkg-query`, `journalctl`, `ip`, `systemctl`,
//! `last`, `who`), each with a timeout, never failing the package when it
//! fails. Files are opened with `O_NOFOLLOW` relative to a directory reached
//! without untrusted links (`fsutil::dir`); a link to elsewhere (a user's
//! `~/.config/autostart → /var/lib/picket-agent`) is recorded as `refused`
//! in the manifest, never followed. Protected files (`protected.rs`) are
//! refused by their real path and inode, whatever name leads to them. Per-file and total size caps. Nothing under the agent's
//! state dir is read but `status.json`, the alert queue and the vault's
//! metadata — never the private key. /etc/shadow is read only to say which
//! accounts have a password, are locked or expired; no hash is copied.
//!
//! Files: this one (the collector: caps, reads, the tar, the manifest),
//! `sources.rs` (the running system), `places.rs` (places on disk),
//! `summary.rs` (summary.html); host and process facts come from
//! `crate::sysinfo`, what only /proc has from `platform::linux::procfs`.

mod places;
mod sources;
mod summary;

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::fsutil::{Dir, Owners, SafeError};
use crate::protected::Protected;
use summary::summary_html;

/// Caps: one item, and the whole package (before compression).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub per_file: u64,
    pub total: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self { per_file: 64 * 1024 * 1024, total: 512 * 1024 * 1024 }
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
const TEMP_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

#[derive(Debug, Serialize)]
struct Item {
    name: String,
    source: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Why a file was not read into the package.
#[derive(Debug)]
enum ReadError {
    /// On purpose: a protected file, a link not followed.
    Refused(String),
    Failed(String),
}

impl From<SafeError> for ReadError {
    fn from(e: SafeError) -> Self {
        match e {
            SafeError::Refused { .. } => Self::Refused(e.to_string()),
            SafeError::Io { .. } => Self::Failed(e.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
struct NotCollected {
    place: String,
    why: String,
}

/// What the package found that a responder should see first.
#[derive(Debug, Default, Serialize)]
struct Highlights {
    suspicious_processes: Vec<Value>,
    uid0_accounts: Vec<String>,
    ld_so_preload: Vec<String>,
    recent_persistence: Vec<String>,
    listening: Vec<Value>,
}

pub struct Collector {
    tar: tar::Builder<flate2::write::GzEncoder<std::fs::File>>,
    items: Vec<Item>,
    not_collected: Vec<NotCollected>,
    highlights: Highlights,
    caps: Caps,
    total: u64,
    /// Never read from here (the agent's state dir).
    private: PathBuf,
    /// Root of the persistence places (`/` in production).
    root: PathBuf,
    started: Instant,
}

/// Summary of a finished package.
#[derive(Debug, Serialize)]
pub struct PackageInfo {
    pub items: usize,
    pub errors: usize,
    pub bytes_uncompressed: u64,
    pub seconds: f64,
}

impl Collector {
    pub fn new(out: &Path, caps: Caps, state_dir: &Path, root: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(out)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        Ok(Self {
            tar: tar::Builder::new(gz),
            items: Vec::new(),
            not_collected: Vec::new(),
            highlights: Highlights::default(),
            caps,
            total: 0,
            private: state_dir.to_path_buf(),
            root: root.to_path_buf(),
            started: Instant::now(),
        })
    }

    fn append(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        );
        h.set_cksum();
        self.tar.append_data(&mut h, name, data)
    }

    /// Add `data` as `name`, recording where it came from.
    pub fn add(&mut self, name: &str, source: &str, data: &[u8]) {
        if self.total + data.len() as u64 > self.caps.total {
            self.failed(name, source, format!("the package reached its total cap of {} bytes", self.caps.total));
            return;
        }
        match self.append(name, data) {
            Ok(()) => {
                self.total += data.len() as u64;
                self.items.push(Item {
                    name: name.to_string(),
                    source: source.to_string(),
                    status: "ok",
                    error: None,
                    size: data.len() as u64,
                    sha256: Some(hex::encode(sha2::Sha256::digest(data))),
                });
            }
            Err(e) => self.failed(name, source, e.to_string()),
        }
    }

    fn add_json(&mut self, name: &str, source: &str, value: &Value) {
        let data = serde_json::to_vec_pretty(value).unwrap_or_default();
        self.add(name, source, &data);
    }

    fn failed(&mut self, name: &str, source: &str, error: String) {
        self.items.push(Item {
            name: name.to_string(),
            source: source.to_string(),
            status: "error",
            error: Some(error),
            size: 0,
            sha256: None,
        });
    }

    /// Read a file: its directory reached without untrusted symlinks, the
    /// file itself not followed, at most the per-file cap (the tail for
    /// logs), and never a protected file — checked on the opened file
    /// (the agent's state, its key, shadow files, private keys).
    fn read_file(&self, path: &Path, tail: bool) -> Result<Vec<u8>, ReadError> {
        let (dir, name) = Dir::open_parent(path, Owners::Any).map_err(ReadError::from)?;
        self.read_in(&dir, &name, tail)
    }

    fn read_in(&self, dir: &Dir, name: &OsStr, tail: bool) -> Result<Vec<u8>, ReadError> {
        let mut f = dir.open_file(name).map_err(ReadError::from)?;
        if let Some(why) = Protected::new(&self.private).refusal(&f) {
            return Err(ReadError::Refused(why));
        }
        let meta = f.metadata().map_err(|e| ReadError::Failed(e.to_string()))?;
        let cap = self.caps.per_file;
        if meta.len() > cap {
            if !tail {
                return Err(ReadError::Failed(format!("{} bytes is over the per-file cap of {cap}", meta.len())));
            }
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(meta.len() - cap)).map_err(|e| ReadError::Failed(e.to_string()))?;
        }
        let mut data = Vec::new();
        f.take(cap).read_to_end(&mut data).map_err(|e| ReadError::Failed(e.to_string()))?;
        Ok(data)
    }

    /// Record a read that did not happen: refused (protected, a link not
    /// followed) or failed.
    fn not_read(&mut self, name: &str, source: &str, e: ReadError) {
        match e {
            ReadError::Refused(why) => {
                tracing::warn!(item = name, %why, "package item refused");
                self.items.push(Item {
                    name: name.to_string(),
                    source: source.to_string(),
                    status: "refused",
                    error: Some(why),
                    size: 0,
                    sha256: None,
                });
            }
            ReadError::Failed(e) => self.failed(name, source, e),
        }
    }

    /// Copy a file if it exists (a missing optional file is not an error).
    fn add_file(&mut self, name: &str, path: &Path) -> bool {
        if std::fs::symlink_metadata(path).is_err() {
            return false;
        }
        let source = format!("file:{}", path.display());
        match self.read_file(path, false) {
            Ok(data) => self.add(name, &source, &data),
            Err(e) => self.not_read(name, &source, e),
        }
        true
    }

    /// Run a command with a timeout and add its output.
    fn add_command(&mut self, name: &str, argv: &[&str]) {
        let source = format!("command:{}", argv.join(" "));
        match run(argv) {
            Ok(out) => self.add(name, &source, &out),
            Err(e) => self.failed(name, &source, e),
        }
    }

    fn not_collected(&mut self, place: &str, why: &str) {
        self.not_collected.push(NotCollected { place: place.to_string(), why: why.to_string() });
    }

    fn under_root(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Collect everything and close the archive.
    pub fn collect_all(mut self, extra: &[(String, Vec<u8>)]) -> std::io::Result<PackageInfo> {
        self.system_info();
        self.processes();
        self.network();
        self.users_and_groups();
        self.autoruns();
        self.scheduled_tasks();
        self.add_command(
            "services/units.txt",
            &["systemctl", "list-units", "--type=service", "--all", "--no-pager", "--plain"],
        );
        self.add_command("services/unit_files.txt", &["systemctl", "list-unit-files", "--no-pager", "--plain"]);
        self.installed_programs();
        self.kernel_modules();
        self.open_files();
        self.temp_directories();
        self.logs();
        for (name, data) in extra {
            self.add(name, "agent", data);
        }
        let summary = summary_html(&self.highlights, &self.items, &self.not_collected);
        self.add("summary.html", "generated", summary.as_bytes());
        let errors = self.items.iter().filter(|i| i.status != "ok").count();
        let info = PackageInfo {
            items: self.items.len() + 1,
            errors,
            bytes_uncompressed: self.total,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        let manifest = json!({
            "generated_at": crate::clock::now_rfc3339(),
            "hostname": crate::sysinfo::hostname(),
            "items": self.items,
            "not_collected": self.not_collected,
            "highlights": self.highlights,
        });
        let data = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.append("manifest.json", &data)?;
        let gz = self.tar.into_inner()?;
        let file = gz.finish()?;
        file.sync_all()?;
        Ok(info)
    }

    /// Copy the regular files of a directory and its subdirectories. The
    /// directory is reached without untrusted symlinks (a user's
    /// `~/.config/autostart` pointing elsewhere is recorded as refused, not
    /// followed); links inside are recorded as links, never followed.
    fn copy_dir(&mut self, prefix: &str, path: &Path) -> usize {
        if std::fs::symlink_metadata(path).is_err() {
            return 0;
        }
        match Dir::open(path, Owners::Any) {
            Ok(dir) => self.copy_open_dir(prefix, &dir),
            Err(e) => {
                self.not_read(prefix, &format!("dir:{}", path.display()), ReadError::from(e));
                0
            }
        }
    }

    fn copy_open_dir(&mut self, prefix: &str, dir: &Dir) -> usize {
        let Ok(names) = dir.entries() else { return 0 };
        let mut n = 0;
        for name in names {
            let Ok(Some(st)) = dir.stat(&name) else { continue };
            let shown = name.to_string_lossy().into_owned();
            let full = dir.path().join(&name);
            let source = format!("file:{}", full.display());
            if st.is_symlink() {
                let target = dir.read_link(&name).map(|t| t.display().to_string()).unwrap_or_default();
                self.add(&format!("{prefix}/{shown}.symlink"), &format!("link:{}", full.display()), target.as_bytes());
            } else if st.is_file() {
                match self.read_in(dir, &name, false) {
                    Ok(data) => self.add(&format!("{prefix}/{shown}"), &source, &data),
                    Err(e) => self.not_read(&format!("{prefix}/{shown}"), &source, e),
                }
                if st.mtime() > now_secs() - 7 * 86_400 {
                    self.highlights.recent_persistence.push(full.display().to_string());
                }
            } else if st.is_dir() && !shown.starts_with('.') {
                match dir.subdir(&name, Owners::Any) {
                    Ok(sub) => n += self.copy_open_dir(&format!("{prefix}/{shown}"), &sub),
                    Err(e) => self.not_read(&format!("{prefix}/{shown}"), &source, ReadError::from(e)),
                }
            }
            n += 1;
        }
        n
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Run `argv` with [`COMMAND_TIMEOUT`]; stdout, or why not.
fn run(argv: &[&str]) -> Result<Vec<u8>, String> {
    crate::platform::linux::command::run(argv, COMMAND_TIMEOUT)
}
