//! `picketctl`: the operator's command line over the coordinator API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "picketctl", version, about = "Operate a Picket coordinator through its API")]
struct Cli {
    /// API base URL.
    #[arg(long, global = true, env = "PICKET_SERVER", default_value = "http://127.0.0.1:7080")]
    server: String,
    /// API token (or use --token-file / PICKET_TOKEN_FILE).
    #[arg(long, global = true, env = "PICKET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token, e.g. <data-dir>/admin.token.
    #[arg(long, global = true, env = "PICKET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrollment tokens.
    #[command(subcommand, name = "enroll-token")]
    EnrollToken(EnrollTokenCmd),
    /// Enrolled devices.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// API tokens.
    #[command(subcommand, name = "api-token")]
    ApiToken(ApiTokenCmd),
    /// The action center: pending approvals, history, decisions.
    #[command(subcommand)]
    Actions(ActionsCmd),
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
        /// cidr=NET[,protocol=tcp|udp|any][,port=N][,direction=outbound|inbound|both]; repeatable.
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
    /// Samples collected from devices.
    #[command(subcommand)]
    Samples(SamplesCmd),
    /// Collect an investigation package from a device (action collect_package).
    CollectPackage {
        device: String,
        #[arg(long)]
        comment: String,
    },
    /// Investigation packages.
    #[command(subcommand)]
    Package(PackageCmd),
    /// Device groups and their automation levels (full, semi_any, semi_core,
    /// semi_non_temp, none).
    #[command(subcommand, name = "device-groups")]
    DeviceGroups(GroupsCmd),
    /// Automated investigations.
    #[command(subcommand)]
    Investigations(InvestigationsCmd),
    /// YARA rule bundles agents scan with.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// SHA-256 indicators: block (malicious) or allow (overrides every rule).
    #[command(subcommand)]
    Indicators(IndicatorsCmd),
    /// Alerts raised by agents (real-time protection and scans).
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// The audit trail, newest first.
    Audit {
        /// How many entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum EnrollTokenCmd {
    /// Create a token and print the command to run on the device.
    Create(CreateToken),
    /// List tokens.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
    /// Let a token suspended by a device's revocation enroll devices again.
    Resume { id: String },
}

#[derive(Args)]
struct CreateToken {
    /// Device group the enrolled devices join.
    #[arg(long, default_value = "default")]
    group: String,
    /// Hours until the token expires.
    #[arg(long, default_value_t = 24)]
    expires_in_hours: u32,
    /// How many devices may enroll with it.
    #[arg(long, default_value_t = 1)]
    max_uses: u32,
}

#[derive(Subcommand)]
enum DevicesCmd {
    /// List devices.
    List,
    /// Show one device.
    Show { id: String },
    /// Revoke a device: refuse its certificate and cut its session.
    Revoke { id: String },
    /// Offboard a device now and print a token to clean it up offline
    /// (`picket-agent offboard --token …`).
    OffboardingToken {
        id: String,
        #[arg(long, default_value_t = 24)]
        expires_in_hours: u32,
    },
}

#[derive(Subcommand)]
enum ActionsCmd {
    /// List actions (default: everything, newest first).
    List {
        /// Only actions waiting for approval.
        #[arg(long, conflicts_with = "history")]
        pending: bool,
        /// Only decided or finished actions.
        #[arg(long)]
        history: bool,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// Comma-separated statuses.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show an action and its timeline.
    Show { id: String },
    /// Request any action kind with JSON parameters.
    Create {
        device: String,
        #[arg(long)]
        kind: String,
        /// JSON object, e.g. '{"pid": 4242}'.
        #[arg(long, default_value = "{}")]
        params: String,
        #[arg(long)]
        comment: String,
    },
    /// Approve one or more pending actions.
    Approve {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a pending action.
    Reject {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Cancel an action the agent has not started.
    Cancel {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Undo a succeeded isolate, restrict_code, stop_and_quarantine, delete_file or remove_persistence.
    Undo {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Export the action history as CSV.
    Export {
        /// CSV is the only format; the flag makes the intent explicit.
        #[arg(long)]
        csv: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GroupsCmd {
    List,
    Create {
        name: String,
        #[arg(long)]
        automation_level: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a group's automation level.
    Set {
        name: String,
        #[arg(long)]
        automation_level: String,
    },
    /// Move a device into a group.
    Move {
        device: String,
        #[arg(long)]
        group: String,
    },
}

#[derive(Subcommand)]
enum InvestigationsCmd {
    List {
        /// running, pending_approval, remediated, partially_remediated,
        /// no_threats_found, failed, terminated_by_user.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Evidence, verdicts, actions and timeline.
    Show { id: String },
    /// Investigate a file on a device by hand.
    Start {
        device: String,
        #[arg(long)]
        path: String,
    },
    /// Approve expanding an investigation to 10 or more devices.
    ApproveExpansion { id: String },
    /// Stop an investigation; what has not run is cancelled.
    Terminate {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Subcommand)]
enum PackageCmd {
    /// Download the package of a collect_package action (a tar.gz).
    Download {
        action_id: String,
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum SamplesCmd {
    /// List samples, newest first.
    List,
    /// Download a sample as a ZIP encrypted with the password `infected`.
    Download {
        sha256: String,
        /// Where to write the ZIP.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Upload rule files (or directories of .yar/.yara files) as the new
    /// bundle; files that do not compile are reported and left out.
    Upload {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List bundles, the current one first.
    List,
}

#[derive(Subcommand)]
enum IndicatorsCmd {
    /// Add or replace an indicator.
    Add {
        #[arg(long)]
        sha256: String,
        /// Treat the file as malicious.
        #[arg(long, conflicts_with = "allow", required_unless_present = "allow")]
        block: bool,
        /// Never detect the file (overrides every rule).
        #[arg(long)]
        allow: bool,
        #[arg(long, default_value = "")]
        comment: String,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z); default never.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List indicators in force.
    List {
        /// Include expired ones.
        #[arg(long)]
        all: bool,
    },
    /// Delete an indicator.
    Delete { sha256: String },
}

#[derive(Subcommand)]
enum AlertsCmd {
    /// List alerts, most recently seen first.
    List {
        /// new, in_progress or resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// malicious, suspicious or informational.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show an alert and its history.
    Show { id: String },
    /// Classify an alert. false_positive (approver) undoes what its
    /// investigations did, allows the file and suppresses the detection.
    Classify {
        id: String,
        /// true_positive, informational or false_positive.
        #[arg(long)]
        classification: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Set an alert's status.
    Set {
        id: String,
        /// new, in_progress or resolved.
        #[arg(long)]
        status: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Subcommand)]
enum ApiTokenCmd {
    /// Create an API token (the secret is shown once).
    Create {
        #[arg(long)]
        name: String,
        /// viewer, responder, approver or admin.
        #[arg(long)]
        role: String,
        /// The person it is for (default: its name); the two-person rule
        /// counts all tokens of one person as that person.
        #[arg(long)]
        user: Option<String>,
        /// A token for an integration (its actions' source is `api`).
        #[arg(long)]
        integration: bool,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id (refused from its next request on).
    Revoke { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(t) => t.trim().to_string(),
            Err(e) => return fail(&format!("cannot read token file {}: {e}", path.display())),
        },
        (None, None) => {
            return fail("no API token: pass --token or --token-file (or set PICKET_TOKEN / PICKET_TOKEN_FILE)")
        }
    };
    let client = Client::new(&cli.server, &token);
    match execute(&client, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("picketctl: {message}");
    ExitCode::FAILURE
}

fn execute(client: &Client, cli: &Cli) -> Result<(), ClientError> {
    let json_out = cli.json;
    match &cli.command {
        Command::EnrollToken(EnrollTokenCmd::Create(c)) => {
            let body = json!({ "group": c.group, "expires_in_hours": c.expires_in_hours, "max_uses": c.max_uses });
            let t = client.post("/api/v1/enrollment-tokens", &body)?;
            if json_out {
                return print_json(&t);
            }
            println!("token:          {}", s(&t["token"]));
            println!("id:             {}", s(&t["id"]));
            println!("group:          {}", s(&t["group"]));
            println!("expires at:     {}", s(&t["expires_at"]));
            println!("uses left:      {}", s(&t["uses_left"]));
            println!("CA fingerprint: {}", s(&t["ca_fingerprint"]));
            println!();
            println!("Run on the device (as root):");
            println!("  {}", s(&t["enroll_command"]));
        }
        Command::EnrollToken(EnrollTokenCmd::List) => {
            let items = all_pages(client, "/api/v1/enrollment-tokens")?;
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "GROUP", "STATE", "USES LEFT", "EXPIRES", "CREATED BY"], &items, |t| {
                vec![
                    s(&t["id"]),
                    s(&t["group"]),
                    s(&t["state"]),
                    s(&t["uses_left"]),
                    s(&t["expires_at"]),
                    s(&t["created_by"]),
                ]
            });
        }
        Command::EnrollToken(EnrollTokenCmd::Revoke { id }) => {
            let t = client.delete(&format!("/api/v1/enrollment-tokens/{}", seg(id)))?;
            if json_out {
                return print_json(&t);
            }
            println!("enrollment token {} revoked", s(&t["id"]));
        }
        Command::EnrollToken(EnrollTokenCmd::Resume { id }) => {
            let t = client.post(&format!("/api/v1/enrollment-tokens/{}/resume", seg(id)), &json!({}))?;
            if json_out {
                return print_json(&t);
            }
            println!("enrollment token {} can enroll devices again ({})", s(&t["id"]), s(&t["state"]));
        }
        Command::Devices(DevicesCmd::List) => {
            let items = all_pages(client, "/api/v1/devices")?;
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "HOSTNAME", "STATUS", "GROUP", "IP", "OS", "LAST SEEN"], &items, |d| {
                vec![
                    s(&d["id"]),
                    s(&d["hostname"]),
                    s(&d["status"]),
                    s(&d["group"]),
                    s(&d["ip"]),
                    s(&d["os"]),
                    s(&d["last_seen"]),
                ]
            });
        }
        Command::Devices(DevicesCmd::Show { id }) => {
            let d = client.get(&format!("/api/v1/devices/{}", seg(id)))?;
            if json_out {
                return print_json(&d);
            }
            print_object(&d);
        }
        Command::Devices(DevicesCmd::Revoke { id }) => {
            let d = client.post(&format!("/api/v1/devices/{}/revoke", seg(id)), &json!({}))?;
            if json_out {
                return print_json(&d);
            }
            println!("device {} ({}) revoked", s(&d["id"]), s(&d["hostname"]));
            if let Some(t) = d["enrollment_token_suspended"].as_str() {
                println!("its enrollment token {t} is suspended (resume it with `picketctl enroll-token resume {t}`)");
            }
        }
        Command::Devices(DevicesCmd::OffboardingToken { id, expires_in_hours }) => {
            let t = client.post(
                &format!("/api/v1/devices/{}/offboarding-token", seg(id)),
                &json!({ "expires_in_hours": expires_in_hours }),
            )?;
            if json_out {
                return print_json(&t);
            }
            println!("device {} ({}) is offboarded on the coordinator.", s(&t["device_id"]), s(&t["hostname"]));
            println!("token expires at {}. Run on the device (as root):", s(&t["expires_at"]));
            println!("  {}", s(&t["offboard_command"]));
        }
        Command::ApiToken(ApiTokenCmd::Create { name, role, user, integration, expires_in_days }) => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            if *integration {
                body["kind"] = json!("integration");
            }
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            let t = client.post("/api/v1/api-tokens", &body)?;
            if json_out {
                return print_json(&t);
            }
            println!("token:   {}", s(&t["token"]));
            println!("id:      {}", s(&t["id"]));
            println!("name:    {}", s(&t["name"]));
            println!("user:    {}", s(&t["user"]));
            println!("kind:    {}", s(&t["kind"]));
            println!("role:    {}", s(&t["role"]));
            println!("expires: {}", s(&t["expires_at"]));
            println!("(the token is shown only once)");
        }
        Command::ApiToken(ApiTokenCmd::List) => {
            let t = client.get("/api/v1/api-tokens")?;
            let items = t["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "NAME", "USER", "KIND", "ROLE", "STATE", "EXPIRES", "CREATED BY"], &items, |t| {
                vec![
                    s(&t["id"]),
                    s(&t["name"]),
                    s(&t["user"]),
                    s(&t["kind"]),
                    s(&t["role"]),
                    s(&t["state"]),
                    s(&t["expires_at"]),
                    s(&t["created_by"]),
                ]
            });
        }
        Command::ApiToken(ApiTokenCmd::Revoke { id }) => {
            let t = client.delete(&format!("/api/v1/api-tokens/{}", seg(id)))?;
            if json_out {
                return print_json(&t);
            }
            println!("API token {} ({}) revoked", s(&t["id"]), s(&t["name"]));
        }
        Command::Actions(cmd) => return actions(client, cmd, json_out),
        Command::KillProcess { device, pid, sha256, grace_secs, comment } => {
            let mut params = json!({ "grace_secs": grace_secs });
            if let Some(pid) = pid {
                params["pid"] = json!(pid);
            }
            if let Some(h) = sha256 {
                params["sha256"] = json!(h);
            }
            let body = json!({ "kind": "kill_process", "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Isolate { device, selective, exclusions, allow_dns, allow_dhcp, comment } => {
            let exclusions = exclusions.iter().map(|e| parse_exclusion(e)).collect::<Result<Vec<_>, _>>()?;
            let params = if *selective {
                json!({ "mode": "selective", "exclusions": exclusions, "allow_dns": allow_dns, "allow_dhcp": allow_dhcp })
            } else {
                json!({ "mode": "full" })
            };
            let body = json!({ "kind": "isolate", "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::ReleaseIsolation { device, comment } => {
            let body = json!({ "kind": "release_isolation", "params": {}, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Scan { device, quick, full, paths, cpu_percent, comment } => {
            let params = match (quick, full) {
                (true, _) => json!({ "mode": "quick", "cpu_percent": cpu_percent }),
                (_, true) => json!({ "mode": "full", "cpu_percent": cpu_percent }),
                _ if !paths.is_empty() => json!({ "mode": "paths", "paths": paths, "cpu_percent": cpu_percent }),
                _ => return Err(ClientError::Local("say what to scan: --quick, --full or --path P".into())),
            };
            let body = json!({ "kind": "scan", "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Offboard { device, comment } => {
            let body = json!({ "kind": "offboard", "params": {}, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::RestrictCode { device, allow_sha256, allow_paths, comment } => {
            let params = json!({ "allow_sha256": allow_sha256, "allow_paths": allow_paths });
            let body = json!({ "kind": "restrict_code", "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::ReleaseCode { device, comment } => {
            let body = json!({ "kind": "release_code", "params": {}, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Quarantine { device, path, sha256, force, comment } => {
            let mut params = json!({ "force": force });
            match (path, sha256) {
                (Some(p), _) => params["path"] = json!(p),
                (None, Some(h)) => params["sha256"] = json!(h),
                (None, None) => return Err(ClientError::Local("give --path or --sha256".into())),
            }
            let body = json!({ "kind": "stop_and_quarantine", "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::ReleaseQuarantine { device, ids, comment } => {
            let id = if ids.len() == 1 { json!(ids[0]) } else { json!(ids) };
            let body =
                json!({ "kind": "release_from_quarantine", "params": { "quarantine_id": id }, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::DeleteFile { device, path, force, comment } => {
            let body = json!({ "kind": "delete_file", "params": { "path": path, "force": force }, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::RemovePersistence { device, path, comment } => {
            let body = json!({ "kind": "remove_persistence", "params": { "path": path }, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::RequestSample { device, path, comment } => {
            let body = json!({ "kind": "request_sample", "params": { "path": path }, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Samples(cmd) => return samples(client, cmd, json_out),
        Command::CollectPackage { device, comment } => {
            let body = json!({ "kind": "collect_package", "params": {}, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            return print_action(&a, json_out);
        }
        Command::Package(PackageCmd::Download { action_id, output }) => {
            let got = download(client, &format!("/api/v1/actions/{}/package", seg(action_id)), output)?;
            if json_out {
                return print_json(&json!({ "path": output, "bytes": got }));
            }
            println!("{} ({got} bytes)", output.display());
        }
        Command::Rules(cmd) => return rules(client, cmd, json_out),
        Command::DeviceGroups(cmd) => {
            let r = match cmd {
                GroupsCmd::List => {
                    let r = client.get("/api/v1/device-groups")?;
                    let items = r["items"].as_array().cloned().unwrap_or_default();
                    if json_out {
                        return print_json(&json!(items));
                    }
                    table(&["NAME", "AUTOMATION", "DESCRIPTION"], &items, |g| {
                        vec![s(&g["name"]), s(&g["automation_level"]), s(&g["description"])]
                    });
                    return Ok(());
                }
                GroupsCmd::Create { name, automation_level, description } => client.post(
                    "/api/v1/device-groups",
                    &json!({ "name": name, "automation_level": automation_level, "description": description }),
                )?,
                GroupsCmd::Set { name, automation_level } => client.patch(
                    &format!("/api/v1/device-groups/{}", seg(name)),
                    &json!({ "automation_level": automation_level }),
                )?,
                GroupsCmd::Move { device, group } => {
                    client.patch(&format!("/api/v1/devices/{}", seg(device)), &json!({ "group": group }))?
                }
            };
            if json_out {
                return print_json(&r);
            }
            print_object(&r);
        }
        Command::Investigations(cmd) => {
            let r = match cmd {
                InvestigationsCmd::List { status, device } => {
                    let mut q = vec!["limit=1000".to_string()];
                    for (k, v) in [("status", status), ("device", device)] {
                        if let Some(v) = v {
                            q.push(format!("{k}={}", seg(v)));
                        }
                    }
                    let r = client.get(&format!("/api/v1/investigations?{}", q.join("&")))?;
                    let items = r["items"].as_array().cloned().unwrap_or_default();
                    if json_out {
                        return print_json(&json!(items));
                    }
                    table(&["ID", "STATUS", "DEVICE", "TITLE", "UPDATED"], &items, |i| {
                        vec![s(&i["id"]), s(&i["status"]), s(&i["device_id"]), s(&i["title"]), s(&i["updated_at"])]
                    });
                    return Ok(());
                }
                InvestigationsCmd::Show { id } => client.get(&format!("/api/v1/investigations/{}", seg(id)))?,
                InvestigationsCmd::ApproveExpansion { id } => {
                    client.post(&format!("/api/v1/investigations/{}/approve-expansion", seg(id)), &json!({}))?
                }
                InvestigationsCmd::Start { device, path } => {
                    client.post(&format!("/api/v1/devices/{}/investigations", seg(device)), &json!({ "path": path }))?
                }
                InvestigationsCmd::Terminate { id, comment } => client
                    .post(&format!("/api/v1/investigations/{}/terminate", seg(id)), &json!({ "comment": comment }))?,
            };
            // Evidence and timelines are nested: JSON is the readable form.
            return print_json(&r);
        }
        Command::Indicators(cmd) => return indicators(client, cmd, json_out),
        Command::Alerts(cmd) => return alerts(client, cmd, json_out),
        Command::Audit { limit } => {
            let page = client.get(&format!("/api/v1/audit?limit={}", (*limit).clamp(1, 1000)))?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["AT", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAIL"], &items, |e| {
                vec![s(&e["at"]), s(&e["actor"]), s(&e["action"]), s(&e["target"]), s(&e["result"]), s(&e["detail"])]
            });
        }
    }
    Ok(())
}

/// `cidr=…,protocol=…,port=…,direction=…` → the API's exclusion object.
fn parse_exclusion(spec: &str) -> Result<Value, ClientError> {
    let mut out = serde_json::Map::new();
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| ClientError::Local(format!("--exclude {spec:?}: expected key=value pairs")))?;
        let value = match key {
            "cidr" | "protocol" | "direction" => json!(value),
            "port" => {
                json!(value.parse::<u16>().map_err(|_| ClientError::Local(format!("--exclude: bad port {value:?}")))?)
            }
            other => {
                return Err(ClientError::Local(format!(
                    "--exclude: unknown key {other:?} (cidr, protocol, port, direction)"
                )))
            }
        };
        out.insert(key.to_string(), value);
    }
    if !out.contains_key("cidr") {
        return Err(ClientError::Local(format!("--exclude {spec:?}: cidr= is required")));
    }
    Ok(Value::Object(out))
}

/// Rule files named on the command line: files as given, directories
/// searched (not recursively) for `.yar` / `.yara`.
fn rule_files(paths: &[PathBuf]) -> Result<Vec<Value>, ClientError> {
    let mut found = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| ClientError::Local(format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| ClientError::Local(format!("{}: {e}", p.display())))?;
            let mut inside: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yar" || x == "yara"))
                .collect();
            inside.sort();
            found.extend(inside);
        } else {
            found.push(p.clone());
        }
    }
    if found.is_empty() {
        return Err(ClientError::Local("no .yar or .yara files found".into()));
    }
    found
        .iter()
        .map(|f| {
            let source = std::fs::read_to_string(f).map_err(|e| ClientError::Local(format!("{}: {e}", f.display())))?;
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(json!({ "name": name, "source": source }))
        })
        .collect()
}

fn samples(client: &Client, cmd: &SamplesCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        SamplesCmd::List => {
            let r = client.get("/api/v1/samples")?;
            let items = r["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["SHA256", "SIZE", "DEVICE", "PATH", "COLLECTED"], &items, |x| {
                vec![s(&x["sha256"]), s(&x["size"]), s(&x["device_id"]), s(&x["path"]), s(&x["collected_at"])]
            });
        }
        SamplesCmd::Download { sha256, output } => {
            let got = download(client, &format!("/api/v1/samples/{}", seg(sha256)), output)?;
            if json_out {
                return print_json(&json!({ "path": output, "bytes": got, "password": "infected" }));
            }
            println!("{} ({got} bytes): a ZIP encrypted with the password \"infected\"", output.display());
        }
    }
    Ok(())
}

/// Download `path` to `output` (via a .part file) with a progress line on a terminal.
fn download(client: &Client, path: &str, output: &std::path::Path) -> Result<u64, ClientError> {
    use std::io::IsTerminal;
    let tmp = output.with_extension("part");
    let mut file = std::fs::File::create(&tmp).map_err(|e| ClientError::Local(format!("{}: {e}", tmp.display())))?;
    let show = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: Option<u64>| {
        if show {
            match total {
                Some(t) if t > 0 => eprint!("\r{} / {} KiB ({}%)", done / 1024, t / 1024, done * 100 / t),
                _ => eprint!("\r{} KiB", done / 1024),
            }
        }
    };
    let got = client.download(path, &mut file, &mut progress);
    if show {
        eprintln!();
    }
    match got {
        Ok(n) => {
            std::fs::rename(&tmp, output).map_err(|e| ClientError::Local(format!("{}: {e}", output.display())))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn rules(client: &Client, cmd: &RulesCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        RulesCmd::Upload { paths } => {
            let files = rule_files(paths)?;
            let count = files.len();
            eprintln!("uploading {count} rule files; the coordinator compiles them (this can take a while)…");
            let r = client.post("/api/v1/rules", &json!({ "files": files }))?;
            if json_out {
                return print_json(&r);
            }
            let errors = r["errors"].as_array().cloned().unwrap_or_default();
            println!(
                "bundle {} is current: {} of {count} files loaded, {} rules",
                s(&r["version"]),
                r["files"].as_array().map_or(0, Vec::len),
                s(&r["rules"])
            );
            for e in &errors {
                println!("  left out {}: {}", s(&e["file"]), s(&e["error"]).lines().next().unwrap_or_default());
            }
        }
        RulesCmd::List => {
            let r = client.get("/api/v1/rules")?;
            let items = r["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["VERSION", "CURRENT", "FILES", "RULES", "ERRORS", "BY", "ACTIVATED"], &items, |b| {
                vec![
                    s(&b["version"]).chars().take(16).collect(),
                    if b["current"] == true { "yes".into() } else { String::new() },
                    s(&b["files"]),
                    s(&b["rules"]),
                    b["errors"].as_array().map_or(0, Vec::len).to_string(),
                    s(&b["created_by"]),
                    s(&b["activated_at"]),
                ]
            });
        }
    }
    Ok(())
}

fn indicators(client: &Client, cmd: &IndicatorsCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        IndicatorsCmd::Add { sha256, block, allow: _, comment, expires_at } => {
            let action = if *block { "block" } else { "allow" };
            let mut body = json!({ "sha256": sha256, "action": action, "comment": comment });
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            let r = client.post("/api/v1/indicators", &body)?;
            if json_out {
                return print_json(&r);
            }
            println!("{} {}", s(&r["action"]), s(&r["sha256"]));
        }
        IndicatorsCmd::List { all } => {
            let r = client.get(&format!("/api/v1/indicators{}", if *all { "?all=true" } else { "" }))?;
            let items = r["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["SHA256", "ACTION", "EXPIRES", "BY", "COMMENT"], &items, |i| {
                vec![s(&i["sha256"]), s(&i["action"]), s(&i["expires_at"]), s(&i["created_by"]), s(&i["comment"])]
            });
        }
        IndicatorsCmd::Delete { sha256 } => {
            let r = client.delete(&format!("/api/v1/indicators/{}", seg(sha256)))?;
            if json_out {
                return print_json(&r);
            }
            println!("deleted {}", s(&r["deleted"]));
        }
    }
    Ok(())
}

fn alerts(client: &Client, cmd: &AlertsCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        AlertsCmd::List { status, device, severity, limit } => {
            let mut query = vec![format!("limit={}", (*limit).clamp(1, 1000))];
            for (key, value) in [("status", status), ("device", device), ("severity", severity)] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", seg(v)));
                }
            }
            let page = client.get(&format!("/api/v1/alerts?{}", query.join("&")))?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "SEVERITY", "STATUS", "DEVICE", "RULE", "PATH", "COUNT", "LAST SEEN"], &items, |a| {
                vec![
                    s(&a["id"]),
                    s(&a["severity"]),
                    s(&a["status"]),
                    s(&a["device_id"]),
                    s(&a["detection"]["rule"]),
                    s(&a["detection"]["path"]),
                    s(&a["count"]),
                    s(&a["last_seen"]),
                ]
            });
        }
        AlertsCmd::Show { id } => {
            let a = client.get(&format!("/api/v1/alerts/{}", seg(id)))?;
            if json_out {
                return print_json(&a);
            }
            print_object(&a);
        }
        AlertsCmd::Classify { id, classification, comment } => {
            let r = client.post(
                &format!("/api/v1/alerts/{}/classify", seg(id)),
                &json!({ "classification": classification, "comment": comment }),
            )?;
            return print_json(&r);
        }
        AlertsCmd::Set { id, status, comment } => {
            let a = client
                .patch(&format!("/api/v1/alerts/{}", seg(id)), &json!({ "status": status, "comment": comment }))?;
            if json_out {
                return print_json(&a);
            }
            println!("alert {} is {}", s(&a["id"]), s(&a["status"]));
        }
    }
    Ok(())
}

const HISTORY: &str = "approved,queued,sent,running,succeeded,failed,timed_out,rejected,expired,cancelled";

fn actions(client: &Client, cmd: &ActionsCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        ActionsCmd::List { pending, history, device, kind, status, limit } => {
            let mut query = vec![format!("limit={}", (*limit).clamp(1, 1000))];
            let status = if *pending {
                Some("pending_approval".to_string())
            } else if *history {
                Some(HISTORY.to_string())
            } else {
                status.clone()
            };
            for (key, value) in [("status", status), ("device", device.clone()), ("kind", kind.clone())] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", seg(&v)));
                }
            }
            let page = client.get(&format!("/api/v1/actions?{}", query.join("&")))?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if json_out {
                return print_json(&json!(items));
            }
            table(&["ID", "KIND", "STATUS", "DEVICE", "REQUESTOR", "CREATED", "COMMENT"], &items, |a| {
                vec![
                    s(&a["id"]),
                    s(&a["kind"]),
                    s(&a["status"]),
                    s(&a["device_id"]),
                    s(&a["requestor"]),
                    s(&a["created_at"]),
                    s(&a["comment"]),
                ]
            });
            Ok(())
        }
        ActionsCmd::Show { id } => {
            let a = client.get(&format!("/api/v1/actions/{}", seg(id)))?;
            if json_out {
                return print_json(&a);
            }
            let mut summary = a.clone();
            if let Some(map) = summary.as_object_mut() {
                map.remove("timeline");
            }
            print_object(&summary);
            println!();
            let timeline = a["timeline"].as_array().cloned().unwrap_or_default();
            table(&["AT", "FROM", "TO", "BY", "COMMENT"], &timeline, |t| {
                vec![s(&t["at"]), s(&t["from"]), s(&t["to"]), s(&t["actor"]), s(&t["comment"])]
            });
            Ok(())
        }
        ActionsCmd::Create { device, kind, params, comment } => {
            let params: Value =
                serde_json::from_str(params).map_err(|e| ClientError::Local(format!("--params is not JSON: {e}")))?;
            let body = json!({ "kind": kind, "params": params, "comment": comment });
            let a = client.post(&format!("/api/v1/devices/{}/actions", seg(device)), &body)?;
            print_action(&a, json_out)
        }
        ActionsCmd::Approve { ids, comment } if ids.len() == 1 => {
            let a =
                client.post(&format!("/api/v1/actions/{}/approve", seg(&ids[0])), &json!({ "comment": comment }))?;
            print_action(&a, json_out)
        }
        ActionsCmd::Approve { ids, comment } => {
            let r = client.post("/api/v1/actions/approve", &json!({ "ids": ids, "comment": comment }))?;
            if json_out {
                return print_json(&r);
            }
            let items = r["items"].as_array().cloned().unwrap_or_default();
            table(&["ID", "APPROVED", "STATUS / ERROR"], &items, |i| {
                let detail = if i["ok"] == true { s(&i["status"]) } else { s(&i["error"]) };
                vec![s(&i["id"]), s(&i["ok"]), detail]
            });
            if items.iter().any(|i| i["ok"] != true) {
                return Err(ClientError::Api {
                    status: 0,
                    code: "partial".into(),
                    message: "some actions were not approved".into(),
                });
            }
            Ok(())
        }
        ActionsCmd::Reject { id, comment } => decide(client, id, "reject", comment, json_out),
        ActionsCmd::Cancel { id, comment } => decide(client, id, "cancel", comment, json_out),
        ActionsCmd::Undo { id, comment } => decide(client, id, "undo", comment, json_out),
        ActionsCmd::Export { csv: _, output } => {
            let text = client.get_text("/api/v1/actions.csv")?;
            match output {
                Some(path) => std::fs::write(path, text)
                    .map_err(|e| ClientError::Local(format!("cannot write {}: {e}", path.display()))),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    }
}

fn decide(client: &Client, id: &str, verb: &str, comment: &str, json_out: bool) -> Result<(), ClientError> {
    let a = client.post(&format!("/api/v1/actions/{}/{verb}", seg(id)), &json!({ "comment": comment }))?;
    print_action(&a, json_out)
}

fn print_action(a: &Value, json_out: bool) -> Result<(), ClientError> {
    if json_out {
        return print_json(a);
    }
    println!("{} {} on {}: {}", s(&a["id"]), s(&a["kind"]), s(&a["device_id"]), s(&a["status"]));
    Ok(())
}

/// Follow `next_cursor` until the list is complete.
fn all_pages(client: &Client, path: &str) -> Result<Vec<Value>, ClientError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=1000&cursor={}", seg(c)),
            None => format!("{path}?limit=1000"),
        };
        let page = client.get(&url)?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(items),
        }
    }
}

/// Percent-encode a path segment or query value (ids are plain, but a typo
/// with `/` or `?` must not change the route).
fn seg(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> Result<(), ClientError> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn print_object(v: &Value) {
    if let Some(map) = v.as_object() {
        let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in map {
            println!("{k:width$}  {}", s(val));
        }
    }
}

fn table(headers: &[&str], items: &[Value], row: impl Fn(&Value) -> Vec<String>) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
    if items.is_empty() {
        println!("(none)");
    }
}
