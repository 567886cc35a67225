//! What a quick and a full scan cover on Linux.
//!
//! Quick: the temp directories, home directories and /root, the executables
//! of running processes (a deleted one through `/proc/<pid>/exe`), and the
//! persistence places DFIR tools check (see
//! `../shared/corpus/persistence/linux_persistence_locations.md`).
//! Full: every local filesystem from `/`, never entering proc, sysfs,
//! devtmpfs, cgroup and the other kernel filesystems, nor network ones.

use std::path::PathBuf;

/// Directories (or files) a quick scan walks.
pub const QUICK_DIRS: &[&str] = &[
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/home",
    "/root",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/etc/cron.hourly",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/crontab",
    "/var/spool/cron",
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/etc/init.d",
    "/etc/rc.local",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/bash.bashrc",
    "/etc/ld.so.preload",
    "/etc/xdg/autostart",
    "/etc/udev/rules.d",
    "/etc/modules-load.d",
    "/var/spool/at",
];

/// Filesystem types a full scan never enters.
const PSEUDO_OR_REMOTE: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "bpf",
    "pstore",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "fuse.sshfs",
    "afs",
    "nsfs",
];

/// Quick-scan roots that exist on this machine.
pub fn quick() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = QUICK_DIRS.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    roots.extend(process_executables());
    roots
}

/// Executables of running processes; `/proc/<pid>/exe` itself when the
/// file was deleted (the bytes are still reachable there).
pub fn process_executables() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let exe = e.path().join("exe");
        if let Ok(target) = std::fs::read_link(&exe) {
            let t = target.to_string_lossy();
            if t.ends_with(" (deleted)") {
                out.push(exe);
            } else {
                out.push(target);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Mount points of pseudo and network filesystems, from /proc/self/mountinfo.
pub fn excluded_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&text)
}

fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            PSEUDO_OR_REMOTE.contains(&fstype).then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_pseudo_and_network_filesystems_are_excluded() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    23 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    24 22 0:5 / /sys rw - sysfs sysfs rw\n\
                    25 1 0:40 / /mnt/nas\\040share rw - nfs4 srv:/x rw\n\
                    26 1 0:41 / /tmp rw - tmpfs tmpfs rw\n";
        let got = parse_mountinfo(text);
        assert_eq!(got, vec![PathBuf::from("/proc"), PathBuf::from("/sys"), PathBuf::from("/mnt/nas share")]);
    }

    #[test]
    fn this_process_is_among_the_running_executables() {
        let me = std::fs::read_link("/proc/self/exe").expect("self");
        assert!(process_executables().contains(&me));
    }
}
