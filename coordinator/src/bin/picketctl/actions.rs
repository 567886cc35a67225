//! `actions`: the action center (pending, history, decisions, undo).

use crate::output::{print_action, print_json, print_object, s, seg, table};
use std::path::PathBuf;

use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum ActionsCmd {
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

const HISTORY: &str = "approved,queued,sent,running,succeeded,failed,timed_out,rejected,expired,cancelled";

pub fn actions(client: &Client, cmd: &ActionsCmd, json_out: bool, wait: bool) -> Result<(), ClientError> {
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
            if wait {
                return crate::wait::follow(client, &a, json_out);
            }
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
        ActionsCmd::Undo { id, comment } if wait => {
            let a = client.post(&format!("/api/v1/actions/{}/undo", seg(id)), &json!({ "comment": comment }))?;
            crate::wait::follow(client, &a, json_out)
        }
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
