//! `--wait`: follow an action until it ends — pending approval, queued,
//! running with the agent's progress, then its outcome — with a live
//! progress bar on the terminal (none when stderr is not one). The exit
//! status is the outcome's: success only if the action succeeded.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use picket_coordinator::client::{Client, ClientError};
use serde_json::Value;

use crate::output::{print_action, seg};

/// Statuses an action does not leave.
pub const FINAL: [&str; 6] = ["succeeded", "failed", "timed_out", "rejected", "expired", "cancelled"];

/// How often the action is read again.
const POLL: Duration = Duration::from_millis(500);

/// Follows `action` (the API's JSON of it) until it ends, then prints it
/// as the command would have; an error unless it succeeded.
pub fn follow(client: &Client, action: &Value, json_out: bool) -> Result<(), ClientError> {
    let id = action["id"].as_str().ok_or_else(|| ClientError::Local("the answer holds no action id".into()))?;
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos:>3}% {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{} {}", action["kind"].as_str().unwrap_or("action"), short(id)));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut current = action.clone();
    loop {
        let status = current["status"].as_str().unwrap_or_default().to_string();
        if status == "succeeded" {
            bar.set_position(100);
        }
        let progress = &current["progress"];
        let phase = progress["phase"].as_str().unwrap_or_default();
        bar.set_message(match (status.as_str(), phase) {
            ("pending_approval", _) => "waiting for an approver".to_string(),
            ("queued" | "approved", _) => "queued until the device takes it".to_string(),
            ("running", "") | ("sent", _) => status.replace('_', " "),
            (_, phase) if !phase.is_empty() && !FINAL.contains(&status.as_str()) => format!("running: {phase}"),
            _ => status.replace('_', " "),
        });
        if let Some(percent) = progress["percent"].as_u64() {
            bar.set_position(percent.min(100));
        }
        if FINAL.contains(&status.as_str()) {
            bar.finish_and_clear();
            print_action(&current, json_out)?;
            return if status == "succeeded" {
                Ok(())
            } else {
                // A failed action's result is `{"error", "reason"}`.
                let result = &current["result"];
                let why = result["error"].as_str().or(result["reason"].as_str()).unwrap_or_default();
                let why = if why.is_empty() { String::new() } else { format!(": {why}") };
                Err(ClientError::Local(format!("action {id} ended {status}{why}")))
            };
        }
        std::thread::sleep(POLL);
        current = client.get(&format!("/api/v1/actions/{}", seg(id)))?;
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
