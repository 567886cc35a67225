//! `picket-linkwrap`: the Sieve filter program (Pigeonhole's
//! `vnd.dovecot.filter`) that wraps the links of a message at delivery.
//!
//! Dovecot's LMTP runs it per recipient, with the recipient's uid and gid,
//! the message on stdin; what it writes on stdout is what is delivered.
//! It never blocks mail: whatever goes wrong (no key yet, a message it
//! cannot read), it says so on stderr (Dovecot's log) and exits non-zero,
//! and Dovecot delivers the message as it came. A message it leaves as it
//! is on purpose (signed, no links) goes out byte for byte on stdout.
//!
//! ```sieve
//! require ["vnd.dovecot.filter", "envelope", "variables"];
//! if envelope :matches "to" "*" { set "rcpt" "${1}"; }
//! filter "picket-linkwrap" ["--key", "/etc/dovecot/picket-link.key", "--to", "${rcpt}"];
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use picket_agent::mail::linkkey::KeyFile;
use picket_common::link_rewrite::{wrap_links, Wrapped, MAX_MESSAGE};
use picket_common::links::{wrap, Link};

/// Wrap a message's links for time-of-click checks (a Dovecot Sieve filter).
#[derive(Parser)]
#[command(name = "picket-linkwrap", version)]
struct Args {
    /// The link key file the agent writes (`[mail] link_key_file`).
    #[arg(long)]
    key: PathBuf,
    /// The recipient (the Sieve envelope "to").
    #[arg(long)]
    to: String,
}

/// Dovecot delivers the message unchanged when the filter fails.
const UNCHANGED: u8 = 75; // EX_TEMPFAIL

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("picket-linkwrap: {e}");
            return ExitCode::from(UNCHANGED);
        }
    };
    let key = match std::fs::read_to_string(&args.key).map_err(|e| e.to_string()).and_then(|t| KeyFile::parse(&t)) {
        Ok(k) => k,
        Err(error) => {
            eprintln!("picket-linkwrap: {}: {error}; links of mail to {} are not wrapped", args.key.display(), args.to);
            return ExitCode::from(UNCHANGED);
        }
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().lock().take(MAX_MESSAGE as u64 + 1).read_to_end(&mut raw) {
        eprintln!("picket-linkwrap: cannot read the message: {e}");
        return ExitCode::from(UNCHANGED);
    }
    if raw.len() > MAX_MESSAGE {
        eprintln!("picket-linkwrap: message to {} larger than {} MiB: links not wrapped", args.to, MAX_MESSAGE >> 20);
        return ExitCode::from(UNCHANGED);
    }
    let own = format!("{}{}", key.click_url, picket_common::links::PREFIX);
    let mut wrapper = |message_id: &str, url: &str| {
        if url.starts_with(&own) {
            return None; // already ours (a message forwarded inside the organisation)
        }
        let link = Link {
            url: url.to_string(),
            device: key.device,
            recipient: args.to.clone(),
            message_id: message_id.to_string(),
        };
        wrap(&key.click_url, &key.key, &link)
    };
    let out = match wrap_links(&raw, &mut wrapper) {
        Wrapped::Changed { message, .. } => message,
        Wrapped::Unchanged(why) => {
            if why != "no links" {
                eprintln!("picket-linkwrap: message to {} left as it is: {why}", args.to);
            }
            raw
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-linkwrap: cannot write the message: {e}");
            ExitCode::from(UNCHANGED)
        }
    }
}
