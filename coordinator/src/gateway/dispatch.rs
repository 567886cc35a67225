//! Pushing actions to agents and taking their reports.
//!
//! Delivery is at least once: a queued action is marked `sent` and framed to
//! the live session; on every (re)connect all `queued` and `sent` actions of
//! the device are framed again. The agent's journal makes execution at most
//! once, so a repeat is harmless.

use std::sync::Arc;

use picket_common::actions::{ActionKind, ActionOutcome, ActionRequest, ActionResult};
use picket_common::proto::CoordMsg;
use uuid::Uuid;

use super::Gateway;
use crate::store::{ActionStatus, Changes, DeviceStatus};

impl Gateway {
    /// Frame every queued or sent action of `device` to its live session.
    pub async fn deliver(self: &Arc<Self>, device: Uuid) {
        self.deliver_many(&[device]).await;
    }

    /// Frame every queued or sent action of these devices to their live
    /// sessions: one query, one transaction marking the queued ones `sent`,
    /// then one frame each.
    pub async fn deliver_many(self: &Arc<Self>, devices: &[Uuid]) {
        let online: Vec<Uuid> = devices.iter().copied().filter(|d| self.sessions.info(d).is_some()).collect();
        if online.is_empty() {
            return;
        }
        let actions = match self.store.actions_to_deliver_many(&online).await {
            Ok(a) => a,
            Err(error) => {
                tracing::error!(%error, devices = online.len(), "cannot load actions to deliver");
                return;
            }
        };
        let queued: Vec<Uuid> = actions.iter().filter(|a| a.status == ActionStatus::Queued).map(|a| a.id).collect();
        let sent: std::collections::HashSet<Uuid> = if queued.is_empty() {
            Default::default()
        } else {
            match self
                .store
                .transition_many(
                    &queued,
                    &[ActionStatus::Queued],
                    ActionStatus::Sent,
                    "coordinator",
                    "",
                    &Changes::default(),
                )
                .await
            {
                Ok(moved) => {
                    self.events.changed();
                    moved.into_iter().collect()
                }
                Err(error) => {
                    tracing::error!(%error, "cannot mark actions sent");
                    return;
                }
            }
        };
        let mut frames = Vec::with_capacity(actions.len());
        for action in actions {
            // Queued ones that did not move were cancelled or taken meanwhile.
            if action.status == ActionStatus::Queued && !sent.contains(&action.id) {
                continue;
            }
            let request = ActionRequest { action_id: action.id, kind: action.kind, params_json: action.params };
            frames.push((action.device_id, request));
        }
        self.send_actions(frames).await;
    }

    /// The device is offboarded: refuse its certificate from now on. Its
    /// session is closed after the pending acknowledgement is written.
    pub async fn mark_offboarded(&self, device: Uuid) -> bool {
        match self.store.offboard_device(device).await {
            Ok(_) => {
                self.directory.set(device, DeviceStatus::Offboarded);
                tracing::warn!(%device, "device offboarded");
                true
            }
            Err(error) => {
                tracing::error!(%error, %device, "cannot mark the device offboarded");
                false
            }
        }
    }

    /// Frame actions already marked `sent` to their devices' sessions; one
    /// whose session is gone goes again on the next connect. Each device's
    /// frames go in order, the devices side by side: a device that does not
    /// read (cut off after the send timeout) delays no other.
    pub async fn send_actions(self: &Arc<Self>, frames: Vec<(Uuid, ActionRequest)>) {
        let mut by_device: std::collections::HashMap<Uuid, Vec<ActionRequest>> = std::collections::HashMap::new();
        for (device, request) in frames {
            by_device.entry(device).or_default().push(request);
        }
        let mut sends = tokio::task::JoinSet::new();
        for (device, requests) in by_device {
            let gateway = self.clone();
            sends.spawn(async move {
                for request in requests {
                    let id = request.action_id;
                    if !gateway.sessions.send(&device, CoordMsg::Action(request)).await {
                        tracing::info!(action = %id, %device, "session ended before delivery; will resend on reconnect");
                        return;
                    }
                    tracing::debug!(action = %id, %device, "action sent");
                }
            });
        }
        while sends.join_next().await.is_some() {}
    }

    /// Ask the device to drop an action it has not started.
    pub async fn cancel_on_device(&self, device: Uuid, action: Uuid) {
        self.sessions.send(&device, CoordMsg::Cancel { action_id: action }).await;
    }

    pub(super) async fn on_action_started(&self, device: Uuid, action: Uuid) {
        let from = [ActionStatus::Queued, ActionStatus::Sent, ActionStatus::Cancelled];
        let comment = "agent started the action";
        match self
            .store
            .transition(
                action,
                &from,
                ActionStatus::Running,
                "agent",
                comment,
                &Changes { device: Some(device), ..Changes::default() },
            )
            .await
        {
            Ok(Some(a)) => {
                if let Some(queued_at) = a.queued_at {
                    self.metrics.observe_dispatch(a.updated_at - queued_at);
                }
                self.events.changed();
            }
            Ok(None) => tracing::warn!(%action, "start reported for an action not waiting to run"),
            Err(error) => tracing::error!(%error, %action, "cannot record action start"),
        }
    }

    /// Store a result. Returns true when it is stored (or was already), so the
    /// agent may forget it; false on a storage error (the agent resends).
    pub(super) async fn on_action_result(&self, device: Uuid, result: &ActionResult) -> bool {
        let id = result.action_id;
        // The agent is the authority on what ran: a result also lands on an
        // action the coordinator had marked cancelled or timed out meanwhile.
        let from = [
            ActionStatus::Queued,
            ActionStatus::Sent,
            ActionStatus::Running,
            ActionStatus::Cancelled,
            ActionStatus::TimedOut,
        ];
        let outcome = match &result.outcome {
            ActionOutcome::Succeeded { output_json } => {
                self.store
                    .transition(
                        id,
                        &from,
                        ActionStatus::Succeeded,
                        "agent",
                        "",
                        &Changes {
                            device: Some(device),
                            result: Some(output_json),
                            expires_at: Some(None),
                            ..Changes::default()
                        },
                    )
                    .await
            }
            ActionOutcome::Failed { reason, error } => {
                self.store
                    .transition(
                        id,
                        &from,
                        ActionStatus::Failed,
                        "agent",
                        reason.as_str(),
                        &Changes {
                            device: Some(device),
                            error: Some(error),
                            failure_reason: Some(reason.as_str()),
                            expires_at: Some(None),
                            ..Changes::default()
                        },
                    )
                    .await
            }
            ActionOutcome::Cancelled => {
                self.store
                    .transition(
                        id,
                        &[ActionStatus::Queued, ActionStatus::Sent],
                        ActionStatus::Cancelled,
                        "agent",
                        "cancelled on the device before it started",
                        &Changes { device: Some(device), expires_at: Some(None), ..Changes::default() },
                    )
                    .await
            }
        };
        match outcome {
            Ok(Some(a)) => {
                tracing::info!(action = %id, status = a.status.as_str(), "action result stored");
                if a.kind == ActionKind::Offboard && a.status == ActionStatus::Succeeded {
                    return self.mark_offboarded(device).await;
                }
                self.events.changed();
                true
            }
            Ok(None) => {
                tracing::info!(action = %id, "result for an action already final or not this device's; acknowledged");
                true
            }
            Err(error) => {
                tracing::error!(%error, action = %id, "cannot store action result; the agent will resend");
                false
            }
        }
    }
}
