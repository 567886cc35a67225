//! `rules`, `indicators` and `alerts`.

use std::path::PathBuf;

use crate::output::{print_json, print_object, s, seg, table};
use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum RulesCmd {
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
pub enum IndicatorsCmd {
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
pub enum AlertsCmd {
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

pub fn rules(client: &Client, cmd: &RulesCmd, json_out: bool) -> Result<(), ClientError> {
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

pub fn indicators(client: &Client, cmd: &IndicatorsCmd, json_out: bool) -> Result<(), ClientError> {
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

pub fn alerts(client: &Client, cmd: &AlertsCmd, json_out: bool) -> Result<(), ClientError> {
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
