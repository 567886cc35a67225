//! The remediation commands: each requests one action on a device.

use crate::output::{print_action, seg};
use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum Cmd {
    /// Terminate a process on a device (action kill_process): by pid, or
    /// every process running an executable with a given SHA-256.
    KillProcess {
        device: String,
        #[arg(long, required_unless_present = "sha256")]
        pid: Option<u32>,
        /// With --pid: only if its executable has this SHA-256; alone: every such process.
        #[arg(long)]
        sha256: Option<String>,
        /// Seconds between SIGTERM and SIGKILL (0: SIGKILL at once).
        #[arg(long, default_value_t = 0)]
        grace_secs: u64,
        /// Why (required on manual actions).
        #[arg(long)]
        comment: String,
    },
    /// Cut a device off the network, all but the coordinator (action isolate).
    Isolate {
        device: String,
        /// Keep the exclusions (and optionally DNS / DHCP) reachable.
        #[arg(long)]
        selective: bool,
        /// `cidr=NET[,protocol=tcp|udp|any][,port=N][,direction=outbound|inbound|both]`; repeatable.
        #[arg(long = "exclude", requires = "selective")]
        exclusions: Vec<String>,
        #[arg(long, requires = "selective")]
        allow_dns: bool,
        #[arg(long, requires = "selective")]
        allow_dhcp: bool,
        #[arg(long)]
        comment: String,
    },
    /// Remove a device's isolation (action release_isolation).
    ReleaseIsolation {
        device: String,
        #[arg(long)]
        comment: String,
    },
    /// Run an antivirus scan on a device (action scan).
    Scan {
        device: String,
        /// Temp and home directories, running executables, persistence places.
        #[arg(long, conflicts_with_all = ["full", "paths"])]
        quick: bool,
        /// Every local filesystem.
        #[arg(long, conflicts_with = "paths")]
        full: bool,
        /// Absolute paths to scan (repeatable).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// Share of the device's cores to use, in percent.
        #[arg(long, default_value_t = 50)]
        cpu_percent: u8,
        #[arg(long)]
        comment: String,
    },
    /// Offboard a device through its agent (action offboard; needs an approver by default).
    Offboard {
        device: String,
        #[arg(long)]
        comment: String,
    },
    /// Let only packaged, unchanged executables (and allowed ones) run
    /// (action restrict_code; undo releases it).
    RestrictCode {
        device: String,
        /// SHA-256 of an executable allowed anyway (repeatable).
        #[arg(long = "allow-sha256")]
        allow_sha256: Vec<String>,
        /// Path prefix whose executables are allowed (repeatable).
        #[arg(long = "allow-path")]
        allow_paths: Vec<String>,
        #[arg(long)]
        comment: String,
    },
    /// Lift code restriction (action release_code).
    ReleaseCode {
        device: String,
        #[arg(long)]
        comment: String,
    },
    /// Kill what runs a file, remove its persistence and move it into the
    /// encrypted vault (action stop_and_quarantine; undo releases it).
    Quarantine {
        device: String,
        #[arg(long, required_unless_present = "sha256", conflicts_with = "sha256")]
        path: Option<String>,
        /// Every copy with this SHA-256 in the quick-scan places.
        #[arg(long)]
        sha256: Option<String>,
        /// Also a file an installed package owns.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        comment: String,
    },
    /// Put a quarantined file back (action release_from_quarantine).
    ReleaseQuarantine {
        device: String,
        /// The quarantine id from the quarantine's result (repeatable).
        #[arg(long = "id", required = true)]
        ids: Vec<String>,
        #[arg(long)]
        comment: String,
    },
    /// Move a file into the vault without killing anything (action delete_file).
    DeleteFile {
        device: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        comment: String,
    },
    /// Remove the persistence (cron, systemd, rc.local, profiles,
    /// ld.so.preload, autostart, authorized_keys) that runs a file
    /// (action remove_persistence).
    RemovePersistence {
        device: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        comment: String,
    },
    /// Collect a file from a device (action request_sample); download it with
    /// `picketctl samples download`.
    RequestSample {
        device: String,
        /// Absolute path of a regular file on the device.
        #[arg(long)]
        path: String,
        #[arg(long)]
        comment: String,
    },
    /// Collect an investigation package from a device (action collect_package).
    CollectPackage {
        device: String,
        #[arg(long)]
        comment: String,
    },
    /// Take the redirects to outside addresses out of mailbox users'
    /// Sieve scripts on a mail host (action disable_external_forwarding;
    /// the undo puts the exact scripts back).
    DisableExternalForwarding {
        device: String,
        /// Only this user (repeatable; none: every user of the host).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Why (required on manual actions).
        #[arg(long)]
        comment: String,
    },
    /// Block a URL at time of click for the links a mail host wrapped
    /// (action block_url, run by the coordinator; undo: unblock_url).
    /// Messages delivered before the block are covered too.
    BlockUrl {
        /// The mail host whose wrapped links the block applies to.
        device: String,
        /// The link (http:// or https://), or with --domain a domain name.
        url: String,
        /// Block the domain and all its subdomains.
        #[arg(long, conflicts_with = "prefix")]
        domain: bool,
        /// Block every link that starts with URL.
        #[arg(long)]
        prefix: bool,
        /// Lift the block after this long: 30m, 12h, 7d (default: never).
        #[arg(long)]
        expires: Option<String>,
        /// Why (required; shown on the block page).
        #[arg(long)]
        comment: String,
    },
}

/// `30m`, `12h`, `7d`, `90s` as milliseconds.
fn duration_ms(text: &str) -> Result<i64, ClientError> {
    let bad = || ClientError::Local(format!("--expires {text:?}: give a number and s, m, h or d, e.g. 7d"));
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 3650 * 86_400 {
        return Err(bad());
    }
    Ok(n * unit_ms)
}

pub fn run(client: &Client, cmd: &Cmd, json_out: bool, wait: bool) -> Result<(), ClientError> {
    let (device, comment, kind, params) = match cmd {
        Cmd::KillProcess { device, pid, sha256, grace_secs, comment } => {
            let mut params = json!({ "grace_secs": grace_secs });
            if let Some(pid) = pid {
                params["pid"] = json!(pid);
            }
            if let Some(h) = sha256 {
                params["sha256"] = json!(h);
            }
            (device, comment, "kill_process", params)
        }
        Cmd::Isolate { device, selective, exclusions, allow_dns, allow_dhcp, comment } => {
            let exclusions = exclusions.iter().map(|e| parse_exclusion(e)).collect::<Result<Vec<_>, _>>()?;
            let params = if *selective {
                json!({ "mode": "selective", "exclusions": exclusions, "allow_dns": allow_dns, "allow_dhcp": allow_dhcp })
            } else {
                json!({ "mode": "full" })
            };
            (device, comment, "isolate", params)
        }
        Cmd::ReleaseIsolation { device, comment } => (device, comment, "release_isolation", json!({})),
        Cmd::Scan { device, quick, full, paths, cpu_percent, comment } => {
            let params = match (quick, full) {
                (true, _) => json!({ "mode": "quick", "cpu_percent": cpu_percent }),
                (_, true) => json!({ "mode": "full", "cpu_percent": cpu_percent }),
                _ if !paths.is_empty() => json!({ "mode": "paths", "paths": paths, "cpu_percent": cpu_percent }),
                _ => return Err(ClientError::Local("say what to scan: --quick, --full or --path P".into())),
            };
            (device, comment, "scan", params)
        }
        Cmd::Offboard { device, comment } => (device, comment, "offboard", json!({})),
        Cmd::RestrictCode { device, allow_sha256, allow_paths, comment } => {
            (device, comment, "restrict_code", json!({ "allow_sha256": allow_sha256, "allow_paths": allow_paths }))
        }
        Cmd::ReleaseCode { device, comment } => (device, comment, "release_code", json!({})),
        Cmd::Quarantine { device, path, sha256, force, comment } => {
            let mut params = json!({ "force": force });
            match (path, sha256) {
                (Some(p), _) => params["path"] = json!(p),
                (None, Some(h)) => params["sha256"] = json!(h),
                (None, None) => return Err(ClientError::Local("give --path or --sha256".into())),
            }
            (device, comment, "stop_and_quarantine", params)
        }
        Cmd::ReleaseQuarantine { device, ids, comment } => {
            let id = if ids.len() == 1 { json!(ids[0]) } else { json!(ids) };
            (device, comment, "release_from_quarantine", json!({ "quarantine_id": id }))
        }
        Cmd::DeleteFile { device, path, force, comment } => {
            (device, comment, "delete_file", json!({ "path": path, "force": force }))
        }
        Cmd::RemovePersistence { device, path, comment } => {
            (device, comment, "remove_persistence", json!({ "path": path }))
        }
        Cmd::RequestSample { device, path, comment } => (device, comment, "request_sample", json!({ "path": path })),
        Cmd::CollectPackage { device, comment } => (device, comment, "collect_package", json!({})),
        Cmd::DisableExternalForwarding { device, users, comment } => {
            (device, comment, "disable_external_forwarding", json!({ "users": users }))
        }
        Cmd::BlockUrl { device, url, domain, prefix, expires, comment } => {
            let match_type = if *domain {
                "domain"
            } else if *prefix {
                "prefix"
            } else {
                "exact"
            };
            let mut params = json!({ "value": url, "match_type": match_type });
            if let Some(e) = expires {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                params["expires_at"] = json!(now + duration_ms(e)?);
            }
            (device, comment, "block_url", params)
        }
    };
    let body = json!({ "kind": kind, "params": params, "comment": comment });
    let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
    if wait {
        return crate::wait::follow(client, &a, json_out);
    }
    print_action(&a, json_out)
}

fn parse_exclusion(spec: &str) -> Result<Value, ClientError> {
    picket_coordinator::actions::parse_exclusion(spec).map_err(|e| ClientError::Local(format!("--exclude: {e}")))
}
