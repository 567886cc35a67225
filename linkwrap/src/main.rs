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
//! Or, without a process per delivery, as an LMTP proxy in front of
//! Dovecot's LMTP (`picket-linkwrap lmtp`, [`lmtp`]).
//!
//! ```sieve
//! require ["vnd.dovecot.filter", "envelope", "variables"];
//! if envelope :matches "to" "*" { set "rcpt" "${1}"; }
//! filter "picket-linkwrap" ["--key", "/etc/dovecot/picket-link.key", "--to", "${rcpt}"];
//! ```

mod lmtp;
mod wrap;

use std::io::{Read, Write};
use std::process::ExitCode;

use picket_common::link_rewrite::MAX_MESSAGE;

const USAGE: &str = "usage: picket-linkwrap --key FILE --to RECIPIENT
       picket-linkwrap lmtp --listen ADDRESS --upstream ADDRESS --key FILE [--max-connections N]
Wrap a message's links for time-of-click checks.
As a Dovecot Sieve filter: the message on stdin, the wrapped message on stdout.
  --key FILE       the link key file the agent writes ([mail] link_key_file)
  --to RECIPIENT   the recipient (the Sieve envelope \"to\")
As an LMTP proxy in front of Dovecot (`lmtp`): see `picket-linkwrap lmtp --help`.";

/// Dovecot delivers the message unchanged when the filter fails.
const UNCHANGED: u8 = 75; // EX_TEMPFAIL

/// `--key FILE --to RECIPIENT`, in either order; `Ok(None)`: help or
/// version was asked for, and printed. (Two flags: no argument parser is
/// worth its start-up time in a process run per delivery.)
fn args(argv: impl Iterator<Item = String>) -> Result<Option<(String, String)>, String> {
    let (mut key, mut to) = (None, None);
    let mut argv = argv;
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
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("lmtp") {
        return lmtp::main(argv.skip(1));
    }
    let (key_path, to) = match args(argv) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-linkwrap: {e}");
            return ExitCode::from(UNCHANGED);
        }
    };
    let key = match wrap::read_key(&key_path) {
        Ok(k) => k,
        Err(error) => {
            eprintln!("picket-linkwrap: {error}; links of mail to {to} are not wrapped");
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
    let (wrapped, why) = wrap::wrap_for(&raw, &key, &to);
    if let Some(why) = why {
        eprintln!("picket-linkwrap: message to {to} left as it is: {why}");
    }
    let out = wrapped.unwrap_or(raw);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-linkwrap: cannot write the message: {e}");
            ExitCode::from(UNCHANGED)
        }
    }
}
