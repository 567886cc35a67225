//! `samples` and `package`: files collected from devices.

use crate::output::{print_json, s, seg, table};
use std::path::PathBuf;

use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::json;

#[derive(Subcommand)]
pub enum SamplesCmd {
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
pub enum PackageCmd {
    /// Download the package of a collect_package action (a tar.gz).
    Download {
        action_id: String,
        #[arg(short, long)]
        output: PathBuf,
    },
}

pub fn package(client: &Client, cmd: &PackageCmd, json_out: bool) -> Result<(), ClientError> {
    match cmd {
        PackageCmd::Download { action_id, output } => {
            let got = download(client, &format!("/api/v1/actions/{}/package", seg(action_id)), output)?;
            if json_out {
                return print_json(&json!({ "path": output, "bytes": got }));
            }
            println!("{} ({got} bytes)", output.display());
        }
    }
    Ok(())
}

pub fn samples(client: &Client, cmd: &SamplesCmd, json_out: bool) -> Result<(), ClientError> {
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
