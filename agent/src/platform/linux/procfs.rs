//! Reading /proc where no library covers it: the socket tables with the
//! process that holds each socket, mounts, loaded kernel modules, a
//! process's open files and the kernel's build string. (Host and process
//! facts `sysinfo` has come from it: see `crate::sysinfo`.)

use std::collections::HashMap;

use picket_common::actions::results::Socket;

/// The kernel's build string (`/proc/sys/kernel/version`, e.g.
/// "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1").
pub fn kernel_build() -> String {
    std::fs::read_to_string("/proc/sys/kernel/version").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Mount points and their file system types (`/proc/self/mountinfo`).
pub fn mounts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f.get(4)?.to_string(), f.get(sep + 1)?.to_string()))
        })
        .collect()
}

/// A loaded kernel module (`/proc/modules`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Module {
    pub name: String,
    pub size: Option<u64>,
    pub used_by: Option<String>,
    pub state: Option<String>,
}

/// The loaded modules; `None` when the kernel has no loadable module
/// support (no `/proc/modules`).
pub fn modules() -> Option<Vec<Module>> {
    let text = std::fs::read_to_string("/proc/modules").ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(Module {
                    name: f.first()?.to_string(),
                    size: f.get(1)?.parse().ok(),
                    used_by: f.get(3).map(|u| u.trim_end_matches(',').to_string()),
                    state: f.get(4).map(|s| s.to_string()),
                })
            })
            .collect(),
    )
}

/// What process `pid` has open (the targets of `/proc/<pid>/fd/*`), at
/// most `max`; `None` if its descriptors cannot be read.
pub fn open_files(pid: i32, max: usize) -> Option<Vec<String>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.flatten()
            .take(max)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .map(|t| t.display().to_string())
            .collect(),
    )
}

/// TCP and UDP sockets (IPv4 and IPv6) with the pid that holds each.
pub fn sockets() -> Vec<Socket> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(addr("0100007F:1F90"), "127.0.0.1:8080");
        assert_eq!(addr("00000000000000000000000001000000:0016"), "[::1]:22");
        assert_eq!(tcp_state("0A"), "LISTEN");
    }

    #[test]
    fn a_listening_socket_is_found_with_its_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr").to_string();
        let me = std::process::id() as i32;
        let found = sockets();
        let mine = found.iter().find(|s| s.local == local && s.protocol == "tcp").expect("listed");
        assert_eq!((mine.state.as_str(), mine.pid), ("LISTEN", Some(me)));
    }

    #[test]
    fn mounts_and_open_files_are_read() {
        assert!(mounts().iter().any(|(mount, _)| mount == "/"), "the root is mounted");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held-open");
        let _file = std::fs::File::create(&path).expect("create");
        let me = std::process::id() as i32;
        let open = open_files(me, 100_000).expect("own fds");
        assert!(open.contains(&path.display().to_string()), "{open:?}");
        assert!(open_files(me, 1).expect("own fds").len() <= 1);
    }
}
