//! Kinds the coordinator runs itself ([`ActionKind::on_coordinator`]):
//! `block_url` and its undo `unblock_url`. They go through the same
//! pipeline as every action — approval, history, audit, undo — and where
//! an agent would be sent the action, the coordinator does it at once
//! (`queued → running → succeeded | failed`), whether the device is online
//! or not: a URL block is a row the click listener reads, not a change on
//! the mail host. The host is sent its new blocklist (for `mail_scan`) when
//! online, and when it connects.

use picket_common::actions::mail::{BlockUrl, BlockUrlOutput, UnblockUrl, UnblockUrlOutput, UrlMatch};
use picket_common::actions::ActionKind;

use super::ActionCenter;
use crate::clock::now_ms;
use crate::store::{Action, ActionStatus, Changes, Step, StoreError, UrlBlock};

impl ActionCenter {
    /// Run an action of a kind the coordinator runs, now queued (or left
    /// running by a restart: these kinds re-run safely).
    pub(crate) async fn run_here(&self, action: &Action) {
        let span = tracing::info_span!("action", id = %action.id, kind = %action.kind, device = %action.device_id);
        let _enter = span.enter();
        if action.status != ActionStatus::Running {
            match self.store.transition(action.id, Step::Start, "coordinator", "", &Changes::default()).await {
                Ok(Some(_)) => {}
                Ok(None) => return, // cancelled or taken meanwhile
                Err(error) => {
                    tracing::error!(%error, "cannot start the action; it stays queued until the next start");
                    return;
                }
            }
        }
        let outcome = match action.kind {
            ActionKind::BlockUrl => self.block_url(action).await,
            ActionKind::UnblockUrl => self.unblock_url(action).await,
            other => Err(format!("{other} is not a kind the coordinator runs")),
        };
        // In force before the result is recorded: once an operator sees
        // `succeeded`, clicks are checked against it, and the mail host
        // (which checks the links of the mail it scans against its own
        // copy) has its new list queued ahead of any later action.
        if let Some(clicks) = self.clicks.get() {
            if let Err(error) = clicks.reload().await {
                tracing::error!(%error, "cannot re-read the URL blocklist: the change applies at the next refresh");
            }
        }
        self.gateway.push_url_blocklist(action.device_id).await;
        let done = match &outcome {
            Ok(output) => {
                let changes = Changes { result: Some(output), expires_at: Some(None), ..Changes::default() };
                self.store.transition(action.id, Step::Succeed, "coordinator", "", &changes).await
            }
            Err(error) => {
                let changes = Changes {
                    error: Some(error),
                    failure_reason: Some("error"),
                    expires_at: Some(None),
                    ..Changes::default()
                };
                self.store.transition(action.id, Step::Fail, "coordinator", "error", &changes).await
            }
        };
        match done {
            Ok(_) => tracing::info!(ok = outcome.is_ok(), "action run by the coordinator"),
            Err(error) => tracing::error!(%error, "cannot record the action's result; it re-runs at the next start"),
        }
    }

    /// At start: what a restart left queued or running of the coordinator's
    /// own kinds.
    pub async fn run_pending_here(&self) -> Result<usize, StoreError> {
        let pending = self.store.coordinator_actions_pending().await?;
        for action in &pending {
            self.run_here(action).await;
        }
        Ok(pending.len())
    }

    async fn block_url(&self, action: &Action) -> Result<String, String> {
        let p: BlockUrl = serde_json::from_str(&action.params).map_err(|e| format!("parameters: {e}"))?;
        picket_common::actions::mail::check_block_url(&p)?;
        let now = now_ms();
        if p.expires_at.is_some_and(|t| t <= now) {
            return Err("the block's expiry passed before it was approved: nothing was blocked".into());
        }
        let value = if p.match_type == UrlMatch::Domain { p.value.to_ascii_lowercase() } else { p.value.clone() };
        let block = UrlBlock {
            id: action.id,
            device_id: action.device_id,
            match_kind: p.match_type.as_str().to_string(),
            value: value.clone(),
            comment: action.comment.clone(),
            created_by: action.requestor.clone(),
            created_at: now,
            expires_at: p.expires_at,
        };
        self.store.insert_url_block(&block).await.map_err(|e| format!("cannot store the block: {e}"))?;
        let out = BlockUrlOutput { block_id: action.id, value, match_type: p.match_type, expires_at: p.expires_at };
        serde_json::to_string(&out).map_err(|e| e.to_string())
    }

    async fn unblock_url(&self, action: &Action) -> Result<String, String> {
        let p: UnblockUrl = serde_json::from_str(&action.params).map_err(|e| format!("parameters: {e}"))?;
        let known = self
            .store
            .url_block_exists(p.block_id, action.device_id)
            .await
            .map_err(|e| format!("cannot read the blocklist: {e}"))?;
        if !known {
            return Err(format!("no URL block {} on this mail host", p.block_id));
        }
        let removed = self
            .store
            .remove_url_block(p.block_id, action.device_id, &action.requestor, now_ms())
            .await
            .map_err(|e| format!("cannot lift the block: {e}"))?;
        serde_json::to_string(&UnblockUrlOutput { block_id: p.block_id, removed }).map_err(|e| e.to_string())
    }
}
