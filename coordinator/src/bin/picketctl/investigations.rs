//! `investigations`.

use crate::output::{print_json, s, seg, table};
use clap::Subcommand;
use picket_coordinator::client::{Client, ClientError};
use serde_json::json;

#[derive(Subcommand)]
pub enum InvestigationsCmd {
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

pub fn run(client: &Client, cmd: &InvestigationsCmd, json_out: bool) -> Result<(), ClientError> {
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
        InvestigationsCmd::Terminate { id, comment } => {
            client.post(&format!("/api/v1/investigations/{}/terminate", seg(id)), &json!({ "comment": comment }))?
        }
    };
    // Evidence and timelines are nested: JSON is the readable form.
    print_json(&r)
}
