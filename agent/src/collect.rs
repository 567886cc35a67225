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

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::fsutil::{Dir, Owners, SafeError};
use crate::protected::Protected;
use picket_common::actions::results::Socket;

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

    fn system_info(&mut self) {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let btime = read("/proc/stat").lines().find_map(|l| l.strip_prefix("btime ")).map(|v| v.trim().to_string());
        let cpus: Vec<String> = read("/proc/cpuinfo")
            .lines()
            .filter_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .collect();
        let mut disks = Vec::new();
        for line in read("/proc/self/mountinfo").lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
            let (Some(mount), Some(fs)) = (f.get(4), f.get(sep + 1)) else { continue };
            if let Ok(st) = nix::sys::statvfs::statvfs(*mount) {
                let frsize = st.fragment_size();
                disks.push(json!({ "mount": mount, "fs": fs, "bytes": st.blocks() * frsize,
                    "free": st.blocks_available() * frsize }));
            }
        }
        let info = json!({
            "hostname": crate::sysinfo::hostname(),
            "os": crate::sysinfo::os(),
            "kernel": read("/proc/sys/kernel/osrelease").trim(),
            "kernel_version": read("/proc/sys/kernel/version").trim(),
            "uptime_seconds": read("/proc/uptime").split_whitespace().next().and_then(|s| s.parse::<f64>().ok()),
            "boot_time_unix": btime.and_then(|b| b.parse::<i64>().ok()),
            "cpu_count": cpus.len(),
            "cpu_model": cpus.first(),
            "disks": disks,
        });
        self.add_json("system_info/system.json", "/proc (stat, uptime, cpuinfo, sys/kernel), statvfs", &info);
        self.add_file("system_info/os-release", Path::new("/etc/os-release"));
        self.add_file("system_info/meminfo.txt", Path::new("/proc/meminfo"));
        self.add_file("system_info/mountinfo.txt", Path::new("/proc/self/mountinfo"));
    }

    fn processes(&mut self) {
        let users = crate::scan::walk::owners();
        let mut hashes: HashMap<(u64, u64), Option<String>> = HashMap::new();
        let mut list = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else { return };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let base = format!("/proc/{pid}");
            let Ok(status) = std::fs::read_to_string(format!("{base}/status")) else { continue };
            let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
            let uid: Option<u32> = field("Uid:").and_then(|v| v.split_whitespace().next()?.parse().ok());
            let exe = std::fs::read_link(format!("{base}/exe")).ok().map(|p| p.display().to_string());
            let deleted = exe.as_deref().is_some_and(|p| p.ends_with(" (deleted)"));
            let in_temp = exe.as_deref().is_some_and(|p| TEMP_DIRS.iter().any(|t| p.starts_with(&format!("{t}/"))));
            let sha256 = std::fs::metadata(format!("{base}/exe")).ok().and_then(|m| {
                hashes.entry((m.dev(), m.ino())).or_insert_with(|| crate::platform::linux::exe_sha256(pid)).clone()
            });
            let cmdline = std::fs::read(format!("{base}/cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let stat = std::fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
            let start_ticks = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..))
                .and_then(|r| r.split(' ').nth(19))
                .and_then(|s| s.parse::<u64>().ok());
            let p = json!({
                "pid": pid,
                "ppid": field("PPid:").and_then(|v| v.parse::<i32>().ok()),
                "name": field("Name:"),
                "uid": uid,
                "user": uid.and_then(|u| users.get(&u).cloned()),
                "executable": exe,
                "sha256": sha256,
                "cmdline": cmdline,
                "start_time_ticks_since_boot": start_ticks,
                "rss_kib": field("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()),
                "deleted_executable": deleted,
                "executable_in_temp_dir": in_temp,
            });
            if deleted || in_temp {
                self.highlights.suspicious_processes.push(p.clone());
            }
            list.push(p);
        }
        self.add_json("processes/processes.json", "/proc/<pid>/{status,exe,cmdline,stat}", &Value::Array(list));
    }

    fn network(&mut self) {
        let sockets = sockets();
        for s in &sockets {
            let listening = (s.protocol.starts_with("tcp") && s.state == "LISTEN")
                || (s.protocol.starts_with("udp") && s.remote.ends_with(":0"));
            if listening {
                self.highlights.listening.push(json!(s));
            }
        }
        self.add_json("network/sockets.json", "/proc/net/{tcp,tcp6,udp,udp6} + /proc/<pid>/fd", &json!(sockets));
        let listening = Value::Array(self.highlights.listening.clone());
        self.add_json("network/listening.json", "/proc/net/{tcp,tcp6,udp,udp6}", &listening);
        self.add_command("network/interfaces.json", &["ip", "-j", "address"]);
        self.add_command("network/routes.json", &["ip", "-j", "route", "show", "table", "all"]);
        self.add_command("network/neighbours.json", &["ip", "-j", "neigh"]);
        self.add_file("network/hosts", Path::new("/etc/hosts"));
        self.add_file("network/resolv.conf", Path::new("/etc/resolv.conf"));
        self.add_command("network/nftables.txt", &["nft", "list", "ruleset"]);
    }

    fn users_and_groups(&mut self) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let today =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
                / 86_400) as i64;
        let mut pw_state: HashMap<&str, Value> = HashMap::new();
        for line in shadow.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 8 {
                continue;
            }
            let hash = f[1];
            let locked = hash.starts_with('!') || hash.starts_with('*');
            let expired = f[7].parse::<i64>().is_ok_and(|d| d <= today);
            // Only facts about the password; the hash itself never leaves /etc/shadow.
            pw_state.insert(
                f[0],
                json!({ "has_password": !hash.is_empty() && !locked, "locked": locked, "expired": expired }),
            );
        }
        let mut accounts = Vec::new();
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                continue;
            }
            if f[2] == "0" && f[0] != "root" {
                self.highlights.uid0_accounts.push(f[0].to_string());
            }
            accounts.push(json!({ "user": f[0], "uid": f[2].parse::<u32>().ok(), "gid": f[3].parse::<u32>().ok(),
                "home": f[5], "shell": f[6], "password": pw_state.get(f[0]) }));
        }
        self.add_json(
            "users_and_groups/accounts.json",
            "file:/etc/passwd, file:/etc/shadow (status only)",
            &Value::Array(accounts),
        );
        self.add_file("users_and_groups/group", Path::new("/etc/group"));
        let uid0: Vec<&str> =
            passwd.lines().filter(|l| l.split(':').nth(2) == Some("0")).filter_map(|l| l.split(':').next()).collect();
        self.add_json("users_and_groups/uid0_accounts.json", "file:/etc/passwd", &json!(uid0));
        self.add_file("users_and_groups/sudoers/sudoers", Path::new("/etc/sudoers"));
        self.copy_dir("users_and_groups/sudoers/sudoers.d", Path::new("/etc/sudoers.d"));
        self.add_command("users_and_groups/login_history.txt", &["last", "-F", "-w"]);
        self.add_command("users_and_groups/current_sessions.txt", &["who", "-a"]);
        let mut homes = vec![PathBuf::from("/root")];
        if let Ok(rd) = std::fs::read_dir("/home") {
            homes.extend(rd.flatten().map(|e| e.path()));
        }
        for home in homes {
            let user = home.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for name in ["authorized_keys", "authorized_keys2"] {
                self.add_file(
                    &format!("users_and_groups/authorized_keys/{user}_{name}"),
                    &home.join(".ssh").join(name),
                );
            }
        }
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

    fn autoruns(&mut self) {
        let places: [(&str, &str); 14] = [
            ("autoruns/systemd/etc_systemd_system", "/etc/systemd/system"),
            ("autoruns/systemd/etc_systemd_user", "/etc/systemd/user"),
            ("autoruns/systemd/usr_local_lib_systemd_system", "/usr/local/lib/systemd/system"),
            ("autoruns/init.d", "/etc/init.d"),
            ("autoruns/profile.d", "/etc/profile.d"),
            ("autoruns/modules-load.d", "/etc/modules-load.d"),
            ("autoruns/modprobe.d", "/etc/modprobe.d"),
            ("autoruns/udev_rules", "/etc/udev/rules.d"),
            ("autoruns/xdg_autostart", "/etc/xdg/autostart"),
            ("autoruns/update-motd.d", "/etc/update-motd.d"),
            ("autoruns/pam.d", "/etc/pam.d"),
            ("autoruns/apt.conf.d", "/etc/apt/apt.conf.d"),
            ("autoruns/networkmanager_dispatcher", "/etc/NetworkManager/dispatcher.d"),
            ("autoruns/if-up.d", "/etc/network/if-up.d"),
        ];
        for (prefix, place) in places {
            let dir = self.under_root(place);
            self.copy_dir(prefix, &dir);
        }
        for (name, place) in [
            ("autoruns/rc.local", "/etc/rc.local"),
            ("autoruns/profile", "/etc/profile"),
            ("autoruns/bash.bashrc", "/etc/bash.bashrc"),
            ("autoruns/ld.so.preload", "/etc/ld.so.preload"),
            ("autoruns/modules", "/etc/modules"),
        ] {
            let path = self.under_root(place);
            if self.add_file(name, &path) && place == "/etc/ld.so.preload" {
                let text =
                    self.read_file(&path, false).map(|d| String::from_utf8_lossy(&d).into_owned()).unwrap_or_default();
                self.highlights.ld_so_preload.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
            }
        }
        let mut homes = vec![self.under_root("/root")];
        if let Ok(rd) = std::fs::read_dir(self.under_root("/home")) {
            homes.extend(rd.flatten().map(|e| e.path()));
        }
        for home in homes {
            let user = home.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            self.copy_dir(&format!("autoruns/users/{user}/systemd_user"), &home.join(".config/systemd/user"));
            self.copy_dir(&format!("autoruns/users/{user}/autostart"), &home.join(".config/autostart"));
            for rc in [".bashrc", ".profile", ".bash_profile", ".bash_login", ".bash_logout", ".zshrc"] {
                self.add_file(&format!("autoruns/users/{user}/{rc}"), &home.join(rc));
            }
        }
        self.add_command(
            "autoruns/systemd_generators.txt",
            &["ls", "-la", "/usr/lib/systemd/system-generators", "/etc/systemd/system-generators"],
        );
        self.not_collected(
            "PAM modules (/lib/security, /usr/lib/*/security)",
            "binary modules: listed by installed_programs, scan them with a YARA rule set",
        );
        self.not_collected(
            "/lib/modules/<kernel>/**",
            "kernel module files are large; kernel_modules/ lists the loaded ones",
        );
        self.not_collected("/boot (GRUB, initramfs)", "binary images; collect with request_sample when needed");
        self.not_collected("<repo>/.git/hooks, ~/.gitconfig", "repositories can be anywhere; not searched");
        self.not_collected("web roots (/var/www/**)", "content, not configuration; scan with webshell rules");
        self.not_collected("SUID/SGID files and capabilities", "needs a full file system walk; run a full scan");
        self.not_collected(
            "docker (/var/run/docker.sock)",
            "not queried: talking to the daemon changes nothing but is out of scope",
        );
    }

    fn scheduled_tasks(&mut self) {
        for (name, place) in
            [("scheduled_tasks/crontab", "/etc/crontab"), ("scheduled_tasks/anacrontab", "/etc/anacrontab")]
        {
            let path = self.under_root(place);
            self.add_file(name, &path);
        }
        for (prefix, place) in [
            ("scheduled_tasks/cron.d", "/etc/cron.d"),
            ("scheduled_tasks/cron.hourly", "/etc/cron.hourly"),
            ("scheduled_tasks/cron.daily", "/etc/cron.daily"),
            ("scheduled_tasks/cron.weekly", "/etc/cron.weekly"),
            ("scheduled_tasks/cron.monthly", "/etc/cron.monthly"),
            ("scheduled_tasks/spool_cron", "/var/spool/cron"),
            ("scheduled_tasks/at", "/var/spool/at"),
            ("scheduled_tasks/atjobs", "/var/spool/cron/atjobs"),
        ] {
            let dir = self.under_root(place);
            self.copy_dir(prefix, &dir);
        }
        self.add_command("scheduled_tasks/systemd_timers.txt", &["systemctl", "list-timers", "--all", "--no-pager"]);
    }

    fn installed_programs(&mut self) {
        if Path::new("/usr/bin/dpkg-query").exists() {
            self.add_command(
                "installed_programs/dpkg.txt",
                &["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n"],
            );
        } else if Path::new("/usr/bin/rpm").exists() {
            self.add_command("installed_programs/rpm.txt", &["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"]);
        } else {
            self.not_collected("installed programs", "neither dpkg nor rpm is installed");
        }
    }

    fn kernel_modules(&mut self) {
        let loaded: Vec<Value> = std::fs::read_to_string("/proc/modules")
            .map(|t| {
                t.lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        Some(json!({ "name": f.first()?, "size": f.get(1)?.parse::<u64>().ok(),
                            "used_by": f.get(3).map(|u| u.trim_end_matches(',')), "state": f.get(4) }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut sys: Vec<String> = std::fs::read_dir("/sys/module")
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        sys.sort();
        let note = if std::path::Path::new("/proc/modules").exists() {
            "loaded: /proc/modules; sys_module: every module the kernel knows, built-in ones included"
        } else {
            "this kernel has no loadable module support (/proc/modules is absent): only built-in modules exist"
        };
        self.add_json(
            "kernel_modules/modules.json",
            "/proc/modules, /sys/module",
            &json!({ "loaded": loaded, "sys_module": sys, "note": note }),
        );
    }

    fn open_files(&mut self) {
        const PER_PROCESS: usize = 1000;
        const TOTAL: usize = 100_000;
        let mut out = Vec::new();
        let mut total = 0;
        let Ok(rd) = std::fs::read_dir("/proc") else { return };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
            let files: Vec<String> = fds
                .flatten()
                .take(PER_PROCESS)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .map(|t| t.display().to_string())
                .collect();
            total += files.len();
            out.push(json!({ "pid": pid, "files": files }));
            if total >= TOTAL {
                self.not_collected("open files beyond 100,000", "bounded");
                break;
            }
        }
        self.add_json("open_files/open_files.json", "/proc/<pid>/fd (at most 1,000 per process)", &Value::Array(out));
    }

    fn temp_directories(&mut self) {
        const MAX_ENTRIES: usize = 10_000;
        let users = crate::scan::walk::owners();
        let mut entries = Vec::new();
        for dir in TEMP_DIRS {
            let walker = ignore::WalkBuilder::new(dir).standard_filters(false).follow_links(false).build();
            for entry in walker.flatten() {
                if entries.len() >= MAX_ENTRIES {
                    break;
                }
                let path = entry.path();
                if path.starts_with(&self.private) {
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(path) else { continue };
                let executable = meta.is_file() && meta.mode() & 0o111 != 0;
                let sha256 = if executable && meta.len() <= self.caps.per_file {
                    self.read_file(path, false).ok().map(|d| hex::encode(sha2::Sha256::digest(&d)))
                } else {
                    None
                };
                entries.push(json!({
                    "path": path,
                    "type": if meta.is_dir() { "dir" } else if meta.is_file() { "file" } else if meta.file_type().is_symlink() { "symlink" } else { "other" },
                    "owner": users.get(&meta.uid()).cloned().unwrap_or_else(|| meta.uid().to_string()),
                    "mode": format!("{:o}", meta.mode() & 0o7777),
                    "size": meta.len(),
                    "mtime": meta.mtime(),
                    "sha256": sha256,
                }));
            }
        }
        if entries.len() >= MAX_ENTRIES {
            self.not_collected("temp directory entries beyond 10,000", "bounded");
        }
        self.add_json(
            "temp_directories/listing.json",
            "walk of /tmp, /var/tmp, /dev/shm (no links followed)",
            &Value::Array(entries),
        );
    }

    fn logs(&mut self) {
        let mut any = false;
        for (name, path) in [("logs/auth.log", "/var/log/auth.log"), ("logs/secure", "/var/log/secure")] {
            if std::fs::symlink_metadata(path).is_ok() {
                any = true;
                match self.read_file(Path::new(path), true) {
                    Ok(d) => self.add(name, &format!("file:{path} (tail)"), &d),
                    Err(e) => self.not_read(name, &format!("file:{path}"), e),
                }
            }
        }
        if !any {
            self.not_collected(
                "/var/log/auth.log, /var/log/secure",
                "not present on this system (the journal has them)",
            );
        }
        self.add_command("logs/journal.txt", &["journalctl", "-n", "5000", "--no-pager", "-o", "short-iso"]);
    }
}

/// TCP and UDP sockets (IPv4 and IPv6) with the pid that holds each.
pub(crate) fn sockets() -> Vec<Socket> {
    let mut owners: HashMap<u64, i32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else { continue };
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(i) = inode.parse() {
                        owners.insert(i, pid);
                    }
                }
            }
        }
    }
    let mut sockets = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{proto}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let inode: u64 = f[9].parse().unwrap_or(0);
            sockets.push(Socket {
                protocol: proto.to_string(),
                local: addr(f[1]),
                remote: addr(f[2]),
                state: if proto.starts_with("udp") { "-" } else { tcp_state(f[3]) }.to_string(),
                uid: f[7].parse::<u32>().ok(),
                pid: owners.get(&inode).copied(),
            });
        }
    }
    sockets
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// `0100007F:1F90` → `127.0.0.1:8080` (IPv4 and IPv6 as /proc/net shows them).
fn addr(s: &str) -> String {
    let Some((ip, port)) = s.split_once(':') else { return s.to_string() };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    let bytes: Vec<u8> = (0..ip.len() / 2).filter_map(|i| u8::from_str_radix(&ip[2 * i..2 * i + 2], 16).ok()).collect();
    match bytes.len() {
        4 => format!("{}.{}.{}.{}:{port}", bytes[3], bytes[2], bytes[1], bytes[0]),
        16 => {
            // Four little-endian 32-bit words.
            let mut b = [0u8; 16];
            for w in 0..4 {
                for i in 0..4 {
                    b[w * 4 + i] = bytes[w * 4 + 3 - i];
                }
            }
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        _ => s.to_string(),
    }
}

/// Run `argv` with [`COMMAND_TIMEOUT`]; stdout, or why not.
fn run(argv: &[&str]) -> Result<Vec<u8>, String> {
    crate::platform::linux::command::run(argv, COMMAND_TIMEOUT)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn summary_html(h: &Highlights, items: &[Item], not: &[NotCollected]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Picket investigation package: {host}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}.warn{{color:#a00}}</style>\
         </head><body><h1>Investigation package: {host}</h1><p>Generated {at}.</p><h2>Highlights</h2><ul>",
        host = esc(&crate::sysinfo::hostname()),
        at = esc(&crate::clock::now_rfc3339())
    );
    let mut line = |warn: bool, text: String| {
        let _ = write!(out, "<li{}>{}</li>", if warn { " class=\"warn\"" } else { "" }, text);
    };
    line(
        !h.suspicious_processes.is_empty(),
        format!("{} processes run a deleted executable or one in a temp directory", h.suspicious_processes.len()),
    );
    for p in &h.suspicious_processes {
        line(
            true,
            esc(&format!(
                "pid {} {} {}",
                p["pid"],
                p["executable"].as_str().unwrap_or(""),
                p["user"].as_str().unwrap_or("")
            )),
        );
    }
    line(!h.uid0_accounts.is_empty(), format!("uid-0 accounts besides root: {}", esc(&h.uid0_accounts.join(", "))));
    line(!h.ld_so_preload.is_empty(), format!("/etc/ld.so.preload entries: {}", esc(&h.ld_so_preload.join(", "))));
    line(
        !h.recent_persistence.is_empty(),
        format!("persistence changed in the last 7 days: {}", esc(&h.recent_persistence.join(", "))),
    );
    line(false, format!("{} listening sockets", h.listening.len()));
    for l in &h.listening {
        line(
            false,
            esc(&format!(
                "{} {} pid {}",
                l["protocol"].as_str().unwrap_or(""),
                l["local"].as_str().unwrap_or(""),
                l["pid"]
            )),
        );
    }
    out.push_str("</ul><h2>Items</h2><table><tr><th>item</th><th>source</th><th>status</th><th>size</th></tr>");
    for i in items {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(&i.source),
            esc(&i.error.clone().unwrap_or_else(|| i.status.to_string())),
            i.size
        );
    }
    out.push_str("</table><h2>Not collected</h2><ul>");
    for n in not {
        let _ = write!(out, "<li>{}: {}</li>", esc(&n.place), esc(&n.why));
    }
    out.push_str("</ul></body></html>\n");
    out
}

use std::fmt::Write as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(addr("0100007F:1F90"), "127.0.0.1:8080");
        assert_eq!(addr("00000000000000000000000001000000:0016"), "[::1]:22");
        assert_eq!(tcp_state("0A"), "LISTEN");
    }
}
