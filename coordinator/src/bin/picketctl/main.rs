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
mod login;
mod mail;
mod output;
mod remediate;
mod tokens;
mod users;
mod wait;

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
    /// API base URL [default: the one of `picketctl login`, else
    /// https://127.0.0.1:7080].
    #[arg(long, global = true, env = "PICKET_SERVER")]
    server: Option<String>,
    /// PEM file of the CA the coordinator's HTTPS certificate chains to: its
    /// own `<data-dir>/pki/ca.pem`, or the CA of the certificate you gave it.
    /// Without it, the CA pinned by `picketctl login`.
    #[arg(long, global = true, env = "PICKET_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Refuse the CA (file, or the server's at `login`) unless its SHA-256
    /// is this (the coordinator prints its CA's at start).
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
    /// After requesting, approving or undoing an action: follow it with a
    /// progress bar until it ends; the exit status is its outcome.
    #[arg(long, global = true)]
    wait: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trust a coordinator: show the CA its HTTPS certificate chains to,
    /// ask (or compare with --ca-fingerprint), pin it, and use that URL
    /// from now on.
    Login {
        /// The coordinator's API URL, e.g. `https://picket.example:7080`.
        url: String,
    },
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
    /// Named users who sign in to the console (admin).
    #[command(subcommand)]
    Users(users::UsersCmd),
    /// The mail explorer: search every mail host's mailboxes, see clusters.
    #[command(subcommand)]
    Mail(mail::MailCmd),
    /// The audit trail, newest first.
    Audit {
        /// How many entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Login { url } = &cli.command {
        let stdin = std::io::stdin();
        return match login::login(url, cli.ca_fingerprint.as_deref(), &mut stdin.lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
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

/// A client for `--server` (or the server of `picketctl login`): over
/// HTTPS it trusts only `--ca-file`, checked against `--ca-fingerprint`
/// when given, or else the CA `login` pinned for that server.
fn connect(cli: &Cli, token: &str) -> Result<Client, String> {
    let saved = login::Saved::load()?;
    let server = match (&cli.server, &saved.server) {
        (Some(s), _) | (None, Some(s)) => s.clone(),
        (None, None) => "https://127.0.0.1:7080".to_string(),
    };
    if !server.starts_with("https://") {
        return Ok(Client::new(&server, token));
    }
    let Some(path) = &cli.ca_file else {
        let Some(pin) = login::pinned(&saved, &server) else {
            return Err(format!(
                "{server} speaks HTTPS and no CA is trusted for it: run `picketctl login {server}` once (it shows \
                 the CA's fingerprint and asks), or give the CA with --ca-file (or PICKET_CA_FILE) — for the \
                 coordinator's own certificate that is <data-dir>/pki/ca.pem, whose SHA-256 it prints at start"
            ));
        };
        let hint = format!(
            "the CA pinned for {server} by `picketctl login` (SHA-256 {}) does not verify it: its certificate \
             changed or this is not your coordinator. If the change is expected, check the new fingerprint and \
             run `picketctl login {server}` again (pins kept in {})",
            pin.ca_sha256,
            login::describe()
        );
        return Ok(Client::with_ca(&server, token, pin.ca_pem.as_bytes()).map_err(|e| e.to_string())?.trust_hint(hint));
    };
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    if let Some(want) = &cli.ca_fingerprint {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        let got = picket_coordinator::pki::fingerprint(&der);
        let want = login::hex_digits(want);
        if got != want {
            return Err(format!(
                "the CA in {} has SHA-256 {got}, not the {want} you pinned: refusing to trust it",
                path.display()
            ));
        }
    }
    Client::with_ca(&server, token, &pem).map_err(|e| e.to_string())
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
        Command::Actions(cmd) => actions::actions(client, cmd, json_out, cli.wait),
        Command::Remediate(cmd) => remediate::run(client, cmd, json_out, cli.wait),
        Command::Samples(cmd) => files::samples(client, cmd, json_out),
        Command::Package(cmd) => files::package(client, cmd, json_out),
        Command::Rules(cmd) => detection::rules(client, cmd, json_out),
        Command::DeviceGroups(cmd) => devices::groups(client, cmd, json_out),
        Command::Investigations(cmd) => investigations::run(client, cmd, json_out),
        Command::Indicators(cmd) => detection::indicators(client, cmd, json_out),
        Command::Alerts(cmd) => detection::alerts(client, cmd, json_out),
        Command::Audit { limit } => devices::audit(client, *limit, json_out),
        Command::Users(cmd) => users::run(client, cmd, json_out),
        Command::Mail(cmd) => mail::run(client, cmd, json_out),
        Command::Login { .. } => Ok(()),
    }
}
