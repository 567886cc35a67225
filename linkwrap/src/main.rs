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
use std::process::ExitCode;

use picket_common::link_rewrite::{wrap_links, Wrapped, MAX_MESSAGE};
use picket_common::links::{KeyFile, Signer};

const USAGE: &str = "usage: picket-linkwrap --key FILE --to RECIPIENT
Wrap a message's links for time-of-click checks (a Dovecot Sieve filter):
the message on stdin, the wrapped message on stdout.
  --key FILE       the link key file the agent writes ([mail] link_key_file)
  --to RECIPIENT   the recipient (the Sieve envelope \"to\")";

/// Dovecot delivers the message unchanged when the filter fails.
const UNCHANGED: u8 = 75; // EX_TEMPFAIL

/// `--key FILE --to RECIPIENT`, in either order; `Ok(None)`: help or
/// version was asked for, and printed. (Two flags: no argument parser is
/// worth its start-up time in a process run per delivery.)
fn args() -> Result<Option<(String, String)>, String> {
    let (mut key, mut to) = (None, None);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let slot = match flag.as_str() {
            "--key" => &mut key,
            "--to" => &mut to,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" | "-V" => {
                println!("picket-linkwrap {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        };
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    match (key, to) {
        (Some(key), Some(to)) => Ok(Some((key, to))),
        _ => Err(format!("--key and --to are both required\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let (key_path, to) = match args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-linkwrap: {e}");
            return ExitCode::from(UNCHANGED);
        }
    };
    let key = match std::fs::read_to_string(&key_path).map_err(|e| e.to_string()).and_then(|t| KeyFile::parse(&t)) {
        Ok(k) => k,
        Err(error) => {
            eprintln!("picket-linkwrap: {key_path}: {error}; links of mail to {to} are not wrapped");
            return ExitCode::from(UNCHANGED);
        }
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().lock().take(MAX_MESSAGE as u64 + 1).read_to_end(&mut raw) {
        eprintln!("picket-linkwrap: cannot read the message: {e}");
        return ExitCode::from(UNCHANGED);
    }
    if raw.len() > MAX_MESSAGE {
        eprintln!("picket-linkwrap: message to {to} larger than {} MiB: links not wrapped", MAX_MESSAGE >> 20);
        return ExitCode::from(UNCHANGED);
    }
    let own = format!("{}{}", key.click_url, picket_common::links::PREFIX);
    // One message, one Message-ID: the signer is made at the first link.
    let mut signer: Option<Option<Signer>> = None;
    let mut wrapper = |message_id: &str, url: &str| {
        if url.starts_with(&own) {
            return None; // already ours (a message forwarded inside the organisation)
        }
        let signer = signer.get_or_insert_with(|| Signer::new(&key.click_url, &key.key, key.device, &to, message_id));
        signer.as_ref()?.wrap(url)
    };
    let out = match wrap_links(&raw, &mut wrapper) {
        Wrapped::Changed { message, .. } => message,
        Wrapped::Unchanged(why) => {
            if why != "no links" {
                eprintln!("picket-linkwrap: message to {to} left as it is: {why}");
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
