//! What the package holds from places on disk: autoruns, scheduled tasks,
//! installed programs, temp directories, logs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};

use super::*;

impl Collector {
    pub(super) fn autoruns(&mut self) {
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

    pub(super) fn scheduled_tasks(&mut self) {
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

    pub(super) fn installed_programs(&mut self) {
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

    pub(super) fn temp_directories(&mut self) {
        const MAX_ENTRIES: usize = 10_000;
        let users = crate::platform::linux::users::names();
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

    pub(super) fn logs(&mut self) {
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
