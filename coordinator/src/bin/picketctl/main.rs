//! `picketctl`: the operator's command line over the coordinator API.
//!
//! One module per area: [`tokens`], [`devices`], [`actions`],
//! [`remediate`] (one command per action kind), [`files`], [`detection`],
//! [`investigations`]; [`output`] prints.

mod actions;
mod detection;
mod devices;
mod files;
mod investigations;
mod output;
mod remediate;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use picket_coordinator::client::{Client, ClientError};

use actions::ActionsCmd;
use detection::{AlertsCmd, IndicatorsCmd, RulesCmd};
use devices::{DevicesCmd, GroupsCmd};
use files::{PackageCmd, SamplesCmd};
use investigations::InvestigationsCmd;
use tokens::{ApiTokenCmd, EnrollTokenCmd};

#[derive(Parser)]
#[command(name = "picketctl", version, about = "Operate a Picket coordinator through its API")]
struct Cli {
    /// API base URL.
    #[arg(long, global = true, env = "PICKET_SERVER", default_value = "https://127.0.0.1:7080")]
    server: String,
    /// PEM file of the CA the coordinator's HTTPS certificate chains to: its
    /// own `<data-dir>/pki/ca.pem`, or the CA of the certificate you gave it.
    #[arg(long, global = true, env = "PICKET_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Refuse the CA file unless its SHA-256 is this (the coordinator prints
    /// its CA's at start).
    #[arg(long, global = true, env = "PICKET_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// API token (or use --token-file / PICKET_TOKEN_FILE).
    #[arg(long, global = true, env = "PICKET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token, e.g. `<data-dir>/admin.token`.
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
    #[command(flatten)]
    Remediate(remediate::Cmd),
    /// Samples collected from devices.
    #[command(subcommand)]
    Samples(SamplesCmd),
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
    let client = match connect(&cli, &token) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match execute(&client, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// A client for `--server`: over HTTPS it trusts only `--ca-file`, checked
/// against `--ca-fingerprint` when given.
fn connect(cli: &Cli, token: &str) -> Result<Client, String> {
    if !cli.server.starts_with("https://") {
        return Ok(Client::new(&cli.server, token));
    }
    let Some(path) = &cli.ca_file else {
        return Err("the coordinator speaks HTTPS: give the CA its certificate chains to with --ca-file (or \
                    PICKET_CA_FILE) — for its own certificate that is <data-dir>/pki/ca.pem, whose SHA-256 it \
                    prints at start"
            .into());
    };
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    if let Some(want) = &cli.ca_fingerprint {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        let got = picket_coordinator::pki::fingerprint(&der);
        let want: String = want.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_ascii_lowercase();
        if got != want {
            return Err(format!(
                "the CA in {} has SHA-256 {got}, not the {want} you pinned: refusing to trust it",
                path.display()
            ));
        }
    }
    Client::with_ca(&cli.server, token, &pem).map_err(|e| e.to_string())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("picketctl: {message}");
    ExitCode::FAILURE
}

fn execute(client: &Client, cli: &Cli) -> Result<(), ClientError> {
    let json_out = cli.json;
    match &cli.command {
        Command::EnrollToken(cmd) => tokens::enroll_token(client, cmd, json_out),
        Command::Devices(cmd) => devices::devices(client, cmd, json_out),
        Command::ApiToken(cmd) => tokens::api_token(client, cmd, json_out),
        Command::Actions(cmd) => actions::actions(client, cmd, json_out),
        Command::Remediate(cmd) => remediate::run(client, cmd, json_out),
        Command::Samples(cmd) => files::samples(client, cmd, json_out),
        Command::Package(cmd) => files::package(client, cmd, json_out),
        Command::Rules(cmd) => detection::rules(client, cmd, json_out),
        Command::DeviceGroups(cmd) => devices::groups(client, cmd, json_out),
        Command::Investigations(cmd) => investigations::run(client, cmd, json_out),
        Command::Indicators(cmd) => detection::indicators(client, cmd, json_out),
        Command::Alerts(cmd) => detection::alerts(client, cmd, json_out),
        Command::Audit { limit } => devices::audit(client, *limit, json_out),
    }
}
