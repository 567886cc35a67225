//! Network isolation with nftables: one table, `inet picket`, that drops
//! everything in and out except loopback, IPv6 neighbour discovery, the
//! coordinator's endpoints (and replies from them), and in selective mode the
//! configured exclusions, DNS and DHCP. The table is replaced atomically in
//! one `nft -f` transaction; release deletes only this table, so other
//! tables (docker, ufw, the admin's own) are never touched.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::platform::{Direction, IsolationMode, IsolationPolicy, PlatformError, Protocol};

pub const TABLE: &str = "picket";

/// Where `nft` is, if installed.
pub fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

fn nft() -> Result<PathBuf, PlatformError> {
    find_nft()
        .ok_or_else(|| PlatformError::Failed("nftables is not installed (no `nft` command): isolation needs it".into()))
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<String, PlatformError> {
    let mut child = Command::new(nft()?)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PlatformError::Failed(format!("cannot run nft: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| PlatformError::Failed(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| PlatformError::Failed(format!("nft: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(PlatformError::Failed(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Apply `policy`, replacing any previous Picket table in one transaction.
/// Returns the ruleset as loaded.
pub fn apply(policy: &IsolationPolicy) -> Result<String, PlatformError> {
    let ruleset = render(policy)?;
    run_nft(&["-f", "-"], Some(&ruleset))?;
    run_nft(&["list", "table", "inet", TABLE], None)
}

/// Delete the Picket table; `false` when there was none.
pub fn release() -> Result<bool, PlatformError> {
    if run_nft(&["list", "table", "inet", TABLE], None).is_err() {
        return Ok(false);
    }
    run_nft(&["delete", "table", "inet", TABLE], None)?;
    Ok(true)
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// Parse `addr/len` (or a bare address) and check the prefix length.
pub fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), PlatformError> {
    let bad = || PlatformError::Invalid(format!("{cidr:?} is not a CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)"));
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (cidr, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
        None => max,
    };
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

/// The nft script for `policy` (pure: unit-tested without nft).
pub fn render(policy: &IsolationPolicy) -> Result<String, PlatformError> {
    let mut input = vec![
        "iif \"lo\" accept".to_string(),
        "meta l4proto ipv6-icmp icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept"
            .to_string(),
    ];
    let mut output = vec![
        "oif \"lo\" accept".to_string(),
        "meta l4proto ipv6-icmp icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept"
            .to_string(),
    ];
    if policy.coordinator.is_empty() {
        return Err(PlatformError::Invalid("no coordinator address to keep reachable".into()));
    }
    for addr in &policy.coordinator {
        let f = family(&addr.ip());
        let (ip, port) = (addr.ip(), addr.port());
        output.push(format!("{f} daddr {ip} tcp dport {port} accept"));
        input.push(format!("{f} saddr {ip} tcp sport {port} ct state established accept"));
    }
    if policy.mode == IsolationMode::Selective {
        for x in &policy.exclusions {
            let (ip, len) = parse_cidr(&x.cidr)?;
            let f = family(&ip);
            let net = format!("{ip}/{len}");
            let proto = match x.protocol {
                Protocol::Tcp => Some("tcp"),
                Protocol::Udp => Some("udp"),
                Protocol::Any => None,
            };
            if x.port.is_some() && proto.is_none() {
                return Err(PlatformError::Invalid(format!("exclusion {}: a port needs protocol tcp or udp", x.cidr)));
            }
            let (dport, sport) = match (proto, x.port) {
                (Some(p), Some(port)) => (format!(" {p} dport {port}"), format!(" {p} sport {port}")),
                (Some(p), None) => (format!(" meta l4proto {p}"), format!(" meta l4proto {p}")),
                _ => (String::new(), String::new()),
            };
            if matches!(x.direction, Direction::Outbound | Direction::Both) {
                output.push(format!("{f} daddr {net}{dport} accept"));
                input.push(format!("{f} saddr {net}{sport} ct state established accept"));
            }
            if matches!(x.direction, Direction::Inbound | Direction::Both) {
                input.push(format!("{f} saddr {net}{dport} accept"));
                output.push(format!("{f} daddr {net}{sport} ct state established accept"));
            }
        }
        if policy.allow_dns {
            for p in ["udp", "tcp"] {
                output.push(format!("{p} dport 53 accept"));
                input.push(format!("{p} sport 53 ct state established accept"));
            }
        }
        if policy.allow_dhcp {
            output.push("udp sport 68 udp dport 67 accept".into());
            input.push("udp sport 67 udp dport 68 accept".into());
            output.push("udp sport 546 udp dport 547 accept".into());
            input.push("udp sport 547 udp dport 546 accept".into());
        }
    }
    let indent = |rules: &[String]| rules.iter().map(|r| format!("\t\t{r}\n")).collect::<String>();
    Ok(format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
         \tchain input {{\n\t\ttype filter hook input priority filter - 10; policy drop;\n{}\t}}\n\
         \tchain output {{\n\t\ttype filter hook output priority filter - 10; policy drop;\n{}\t}}\n}}\n",
        indent(&input),
        indent(&output)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Exclusion;

    fn policy(mode: IsolationMode, exclusions: Vec<Exclusion>) -> IsolationPolicy {
        IsolationPolicy {
            mode,
            coordinator: vec!["10.1.2.3:7443".parse().expect("addr"), "[fd00::1]:7443".parse().expect("addr")],
            exclusions,
            allow_dns: true,
            allow_dhcp: false,
        }
    }

    #[test]
    fn full_isolation_keeps_only_loopback_nd_and_the_coordinator() {
        let r = render(&policy(IsolationMode::Full, vec![])).expect("render");
        assert!(r.starts_with("table inet picket {}\ndelete table inet picket\n"), "{r}");
        assert!(r.contains("policy drop;"));
        assert!(r.contains("ip daddr 10.1.2.3 tcp dport 7443 accept"));
        assert!(r.contains("ip6 saddr fd00::1 tcp sport 7443 ct state established accept"));
        assert!(!r.contains("dport 53"), "DNS only in selective mode: {r}");
    }

    #[test]
    fn selective_exclusions_render_both_directions_and_are_validated() {
        let x = Exclusion {
            cidr: "192.168.10.0/24".into(),
            protocol: Protocol::Tcp,
            port: Some(443),
            direction: Direction::Outbound,
        };
        let r = render(&policy(IsolationMode::Selective, vec![x])).expect("render");
        assert!(r.contains("ip daddr 192.168.10.0/24 tcp dport 443 accept"), "{r}");
        assert!(r.contains("ip saddr 192.168.10.0/24 tcp sport 443 ct state established accept"), "{r}");
        assert!(r.contains("udp dport 53 accept"));
        let bad =
            Exclusion { cidr: "10.0.0.0/33".into(), protocol: Protocol::Any, port: None, direction: Direction::Both };
        assert!(matches!(render(&policy(IsolationMode::Selective, vec![bad])), Err(PlatformError::Invalid(_))));
        let portless = Exclusion {
            cidr: "10.0.0.0/8".into(),
            protocol: Protocol::Any,
            port: Some(22),
            direction: Direction::Both,
        };
        assert!(matches!(render(&policy(IsolationMode::Selective, vec![portless])), Err(PlatformError::Invalid(_))));
    }
}
