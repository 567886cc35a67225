//! Reading /proc where no library covers it: the socket tables with the
//! process that holds each socket, and what a process runs.

use std::collections::HashMap;

use picket_common::actions::results::Socket;

/// What process `pid` runs (`/proc/<pid>/exe`, " (deleted)" kept).
pub fn exe_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string())
}

/// The parent of process `pid`.
pub fn ppid_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
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
        assert_eq!(ppid_of(me), Some(nix::unistd::getppid().as_raw()));
        assert!(exe_of(me).is_some());
    }
}
