//! Pushing actions to agents and taking their reports.
//!
//! Delivery is at least once: a queued action is marked `sent` and framed to
//! the live session; on every (re)connect all `queued` and `sent` actions of
//! the device are framed again. The agent's journal makes execution at most
//! once, so a repeat is harmless.

use std::sync::Arc;

use picket_common::actions::{ActionKind, ActionOutcome, ActionRequest, ActionResult};
use picket_common::proto::CoordMsg;
use tracing::Instrument;
use uuid::Uuid;

use super::Gateway;
use crate::store::{ActionStatus, Changes, DeviceStatus, Move, Step};

impl Gateway {
    /// Frame every queued or sent action of `device` to its live session.
    pub async fn deliver(self: &Arc<Self>, device: Uuid) {
        self.deliver_many(&[device]).await;
    }

    /// Frame every queued or sent action of these devices to their live
    /// sessions.
    pub async fn deliver_many(self: &Arc<Self>, devices: &[Uuid]) {
        let frames = self.claim_deliveries(devices).await;
        self.send_actions(frames).await;
    }

    /// The frames owed to the live sessions of these devices: every queued
    /// or sent action (one query), the queued ones marked `sent` in one
    /// transaction. Only the gateway builds action frames; send them with
    /// [`Gateway::send_actions`].
    pub async fn claim_deliveries(&self, devices: &[Uuid]) -> Vec<(Uuid, ActionRequest)> {
        let online: Vec<Uuid> = devices.iter().copied().filter(|d| self.sessions.info(d).is_some()).collect();
        if online.is_empty() {
            return Vec::new();
        }
        let actions = match self.store.actions_to_deliver_many(&online).await {
            Ok(a) => a,
            Err(error) => {
                tracing::error!(%error, devices = online.len(), "cannot load actions to deliver");
                return Vec::new();
            }
        };
        let queued: Vec<Uuid> = actions.iter().filter(|a| a.status == ActionStatus::Queued).map(|a| a.id).collect();
        let sent: std::collections::HashSet<Uuid> = if queued.is_empty() {
            Default::default()
        } else {
            let send = [Move { step: Step::Send, actor: "coordinator", comment: "" }];
            match self.store.transition_many(&queued, &send, &Changes::default()).await {
                Ok(moved) => moved.into_iter().collect(),
                Err(error) => {
                    tracing::error!(%error, "cannot mark actions sent");
                    return Vec::new();
                }
            }
        };
        actions
            .into_iter()
            // Queued ones that did not move were cancelled or taken meanwhile.
            .filter(|a| a.status != ActionStatus::Queued || sent.contains(&a.id))
            .map(|a| (a.device_id, ActionRequest { action_id: a.id, kind: a.kind, params_json: a.params }))
            .collect()
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
                    let span =
                        tracing::info_span!("action", id = %request.action_id, kind = %request.kind, device = %device);
                    let sent = async {
                        let sent = gateway.sessions.send(&device, CoordMsg::Action(request)).await;
                        match sent {
                            true => tracing::debug!("action sent"),
                            false => tracing::info!("session ended before delivery; will resend on reconnect"),
                        }
                        sent
                    };
                    if !sent.instrument(span).await {
                        return;
                    }
                }
            });
        }
        while sends.join_next().await.is_some() {}
    }

    /// Ask the device to drop an action it has not started.
    pub async fn cancel_on_device(&self, device: Uuid, action: Uuid) {
        self.sessions.send(&device, CoordMsg::Cancel { action_id: action }).await;
    }

    #[tracing::instrument(name = "action", skip_all, fields(id = %action, kind = tracing::field::Empty, device = %device))]
    pub(super) async fn on_action_started(&self, device: Uuid, action: Uuid) {
        match self
            .store
            .transition(
                action,
                Step::Start,
                "agent",
                "agent started the action",
                &Changes { device: Some(device), ..Changes::default() },
            )
            .await
        {
            Ok(Some(a)) => {
                tracing::Span::current().record("kind", tracing::field::display(a.kind));
                tracing::info!("action running on the device");
                if let Some(queued_at) = a.queued_at {
                    self.metrics.observe_dispatch(a.updated_at - queued_at);
                }
            }
            Ok(None) => tracing::warn!("start reported for an action not waiting to run"),
            Err(error) => tracing::error!(%error, "cannot record action start"),
        }
    }

    /// Store a result. Returns true when it is stored (or was already), so the
    /// agent may forget it; false on a storage error (the agent resends).
    #[tracing::instrument(name = "action", skip_all,
        fields(id = %result.action_id, kind = tracing::field::Empty, device = %device))]
    pub(super) async fn on_action_result(&self, device: Uuid, result: &ActionResult) -> bool {
        let id = result.action_id;
        // The agent is the authority on what ran: a result also lands on an
        // action the coordinator had marked cancelled or timed out meanwhile
        // (see the step table in `store::lifecycle`).
        let outcome = match &result.outcome {
            ActionOutcome::Succeeded { output_json } => {
                self.store
                    .transition(
                        id,
                        Step::Succeed,
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
                        Step::Fail,
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
                        Step::Cancel,
                        "agent",
                        "cancelled on the device before it started",
                        &Changes { device: Some(device), expires_at: Some(None), ..Changes::default() },
                    )
                    .await
            }
        };
        match outcome {
            Ok(Some(a)) => {
                tracing::Span::current().record("kind", tracing::field::display(a.kind));
                tracing::info!(status = a.status.as_str(), "action result stored");
                if a.kind == ActionKind::Offboard && a.status == ActionStatus::Succeeded {
                    return self.mark_offboarded(device).await;
                }
                true
            }
            Ok(None) => {
                tracing::info!("result for an action already final or not this device's; acknowledged");
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot store action result; the agent will resend");
                false
            }
        }
    }
}
