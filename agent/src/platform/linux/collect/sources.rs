//! What the package holds about the running system: host facts,
//! processes, network, users and groups, kernel modules, open files.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::platform::linux::procfs;

impl Collector {
    pub(super) fn system_info(&mut self) {
        let mut disks = Vec::new();
        for (mount, fs) in procfs::mounts() {
            if let Ok(st) = nix::sys::statvfs::statvfs(mount.as_str()) {
                let frsize = st.fragment_size();
                disks.push(json!({ "mount": mount, "fs": fs, "bytes": st.blocks() * frsize,
                    "free": st.blocks_available() * frsize }));
            }
        }
        let cpus = crate::sysinfo::cpus();
        let info = json!({
            "hostname": crate::sysinfo::hostname(),
            "os": crate::sysinfo::os(),
            "kernel": crate::sysinfo::kernel(),
            "kernel_version": procfs::kernel_build(),
            "uptime_seconds": crate::sysinfo::uptime_secs(),
            "boot_time_unix": crate::sysinfo::boot_time_unix(),
            "cpu_count": cpus.len(),
            "cpu_model": cpus.first(),
            "disks": disks,
        });
        self.add_json(
            "system_info/system.json",
            "sysinfo, /proc/sys/kernel/version, /proc/self/mountinfo, statvfs",
            &info,
        );
        self.add_file("system_info/os-release", Path::new("/etc/os-release"));
        self.add_file("system_info/meminfo.txt", Path::new("/proc/meminfo"));
        self.add_file("system_info/mountinfo.txt", Path::new("/proc/self/mountinfo"));
    }

    pub(super) fn processes(&mut self) {
        let users = crate::platform::linux::users::names();
        let mut hashes: HashMap<(u64, u64), Option<String>> = HashMap::new();
        let mut list = Vec::new();
        for p in crate::sysinfo::processes() {
            let pid = p.pid;
            let in_temp = p.exe.as_ref().is_some_and(|e| TEMP_DIRS.iter().any(|t| e.starts_with(t)));
            let sha256 = std::fs::metadata(format!("/proc/{pid}/exe")).ok().and_then(|m| {
                hashes.entry((m.dev(), m.ino())).or_insert_with(|| crate::platform::linux::exe_sha256(pid)).clone()
            });
            let entry = json!({
                "pid": pid,
                "ppid": p.ppid,
                "name": p.name,
                "uid": p.uid,
                "user": p.uid.and_then(|u| users.get(&u).cloned()),
                "executable": p.executable(),
                "sha256": sha256,
                "cmdline": p.cmdline,
                "start_time_unix": p.start_time_unix,
                "rss_bytes": p.rss_bytes,
                "deleted_executable": p.exe_deleted,
                "executable_in_temp_dir": in_temp,
            });
            if p.exe_deleted || in_temp {
                self.highlights.suspicious_processes.push(entry.clone());
            }
            list.push(entry);
        }
        self.add_json(
            "processes/processes.json",
            "sysinfo (/proc/<pid>/{stat,status,exe,cmdline})",
            &Value::Array(list),
        );
    }

    pub(super) fn network(&mut self) {
        let sockets = procfs::sockets();
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

    pub(super) fn users_and_groups(&mut self) {
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

    pub(super) fn kernel_modules(&mut self) {
        let loaded = procfs::modules();
        let mut sys: Vec<String> = std::fs::read_dir("/sys/module")
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        sys.sort();
        let note = if loaded.is_some() {
            "loaded: /proc/modules; sys_module: every module the kernel knows, built-in ones included"
        } else {
            "this kernel has no loadable module support (/proc/modules is absent): only built-in modules exist"
        };
        self.add_json(
            "kernel_modules/modules.json",
            "/proc/modules, /sys/module",
            &json!({ "loaded": loaded.unwrap_or_default(), "sys_module": sys, "note": note }),
        );
    }

    pub(super) fn open_files(&mut self) {
        const PER_PROCESS: usize = 1000;
        const TOTAL: usize = 100_000;
        let mut out = Vec::new();
        let mut total = 0;
        for p in crate::sysinfo::processes() {
            let Some(files) = procfs::open_files(p.pid, PER_PROCESS) else { continue };
            total += files.len();
            out.push(json!({ "pid": p.pid, "files": files }));
            if total >= TOTAL {
                self.not_collected("open files beyond 100,000", "bounded");
                break;
            }
        }
        self.add_json("open_files/open_files.json", "/proc/<pid>/fd (at most 1,000 per process)", &Value::Array(out));
    }
}
