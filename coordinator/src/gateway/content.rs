//! Alerts in, detection content out.

use std::sync::Arc;
use std::time::Duration;

use picket_common::detection::{AlertReport, ContentState};
use picket_common::proto::CoordMsg;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Gateway;

/// How often indicators are re-read, so expired ones leave the agents.
const INDICATOR_RECHECK: Duration = Duration::from_secs(30);

impl Gateway {
    /// Store an agent's alert report; true when it is stored (then
    /// acknowledged). Detections past the device's rate are counted, not
    /// stored (a device cannot flood the store or the investigations).
    pub(super) async fn on_alert(&self, device: Uuid, report: &AlertReport) -> bool {
        let granted = self.alert_limit.take(device, report.detections.len() as u64);
        let trimmed;
        let report = if granted.refused > 0 {
            self.metrics.alerts_dropped.fetch_add(granted.refused, std::sync::atomic::Ordering::Relaxed);
            if let Err(error) = self.store.add_alerts_dropped(device, granted.refused).await {
                tracing::warn!(%error, "could not count dropped detections");
            }
            if granted.warn {
                tracing::warn!(
                    dropped = granted.refused,
                    limit = self.config.max_alerts_per_minute,
                    "device reports detections faster than its rate; the excess is counted, not stored"
                );
            }
            let keep = usize::try_from(granted.allowed).unwrap_or(usize::MAX);
            trimmed =
                AlertReport { detections: report.detections.iter().take(keep).cloned().collect(), ..report.clone() };
            &trimmed
        } else {
            report
        };
        match self.store.record_alert_report(device, report).await {
            Ok(raised) => {
                for alert in &raised {
                    tracing::warn!(%alert, source = %report.source, "alert raised");
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, report = %report.report_id, "could not store an alert report; the agent will resend it");
                false
            }
        }
    }

    /// Record what the agent holds and send it whatever is newer.
    pub(super) async fn on_content_state(self: Arc<Self>, device: Uuid, state: ContentState) {
        if let Some(error) = &state.rules_error {
            tracing::warn!(%error, "the agent could not take the current rule bundle into use");
        }
        let recorded = self
            .store
            .record_content_state(device, &state.rules_version, &state.indicators_version, state.rules_error.as_deref())
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the agent's content versions");
        }
        // A bundle the agent refused is not resent until a new one exists.
        let rules_version = match (&state.rules_error, self.content.rules_version()) {
            (Some(_), Some(current)) => current,
            _ => state.rules_version.clone(),
        };
        for msg in self.content.missing(&rules_version, &state.indicators_version) {
            self.sessions.send_shared(&device, msg).await;
        }
    }

    /// Push a content frame to every live session, each on its own task so
    /// one slow agent delays no other.
    pub fn publish(self: &Arc<Self>, msg: Arc<CoordMsg>) {
        let devices = self.sessions.live_devices();
        tracing::info!(sessions = devices.len(), "pushing detection content");
        for device in devices {
            let (gateway, msg) = (self.clone(), msg.clone());
            tokio::spawn(async move { gateway.sessions.send_shared(&device, msg).await });
        }
    }

    /// Re-read indicators periodically and push when the set changed
    /// (an expiry passed, or another replica changed them).
    pub async fn watch_indicators(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INDICATOR_RECHECK);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.content.reload_indicators(&self.store).await {
                Ok(Some(msg)) => self.publish(msg),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot re-read indicators"),
            }
        }
    }
}

impl Gateway {
    /// Mail host `device`'s URL blocks in force, newest first, as many as
    /// fit half a frame (the rest are left out, and the list says so).
    pub(super) async fn url_blocklist(
        &self,
        device: Uuid,
    ) -> Result<picket_common::url_blocklist::HostBlocklist, crate::store::StoreError> {
        let budget = self.config.max_frame as usize / 2;
        let mut list = picket_common::url_blocklist::HostBlocklist::default();
        let mut bytes = 0;
        for block in self.store.url_blocks_of(device, crate::clock::now_ms()).await? {
            let Some(entry) = block.blocked() else { continue };
            // The id, kind and expiry take under 40 bytes encoded.
            bytes += entry.value.len() + entry.comment.len() + 48;
            if bytes > budget {
                list.truncated = true;
                break;
            }
            list.entries.push(entry);
        }
        if list.truncated {
            tracing::warn!(%device, sent = list.entries.len(),
                "the mail host's URL blocklist is larger than a frame: its oldest blocks are not checked in mail scans");
        }
        Ok(list)
    }

    /// Send mail host `device` its URL blocklist again (after a block or
    /// unblock), if its live session takes one. An agent offline now gets
    /// it when it connects.
    pub async fn push_url_blocklist(&self, device: Uuid) {
        let takes = match self.store.device(device).await {
            Ok(Some(d)) => d.capabilities.iter().any(|c| c == picket_common::url_blocklist::CAPABILITY),
            Ok(None) => false,
            Err(error) => {
                tracing::error!(%error, %device, "cannot read the device: its URL blocklist is sent when it reconnects");
                false
            }
        };
        if !takes || self.sessions.info(&device).is_none() {
            return;
        }
        match self.url_blocklist(device).await {
            Ok(list) => {
                let n = list.entries.len();
                if self.sessions.send(&device, CoordMsg::UrlBlocklist(list)).await {
                    tracing::info!(%device, blocks = n, "URL blocklist sent to the mail host");
                }
            }
            Err(error) => {
                tracing::error!(%error, %device, "cannot read the URL blocklist: the mail host gets it when it reconnects")
            }
        }
    }
}
