//! What the package holds about the running system: host facts,
//! processes, network, users and groups, kernel modules, open files.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

impl Collector {
    pub(super) fn system_info(&mut self) {
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

    pub(super) fn processes(&mut self) {
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

    pub(super) fn network(&mut self) {
        let sockets = crate::platform::linux::procfs::sockets();
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

    pub(super) fn open_files(&mut self) {
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
}
