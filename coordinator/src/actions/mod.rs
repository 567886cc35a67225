//! The action center: creating actions under the approval policy, deciding
//! them (approve, reject, cancel, undo), expiring the ones nobody decided or
//! no device picked up, and handing queued ones to the gateway for dispatch.
//!
//! Layout:
//! - [`policy`]: which manual actions need approval; two-person rule; expiries.
//! - `here`: the kinds the coordinator runs itself (`block_url`, `unblock_url`).
//! - this file: [`ActionCenter`] and the JSON shape of an action.
//!
//! State machine (DESIGN.md): `pending_approval → approved → queued → sent →
//! running → succeeded | failed | timed_out`; `pending_approval → rejected |
//! expired`; `queued | sent → cancelled`. Every change goes through
//! `Store::transition`, which logs it in the same transaction.

mod here;
pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use picket_common::actions::ActionKind;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use policy::ActionPolicy;

use crate::clock::now_ms;
use crate::gateway::Gateway;
use crate::store::{
    Action, ActionSource, ActionStatus, Changes, DeviceStatus, Move, NewAction, Role, Step, Store, StoreError,
};

/// Why a request about an action was refused (maps to 400 / 403 / 404 / 409).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asks: the name shown, the role that bounds what they may do, and
/// the identity the two-person rule compares (`user:alice` for every token
/// of alice's, `system:automation`) — all from the credential, never from
/// a request body.
pub struct Requestor<'a> {
    pub name: &'a str,
    pub role: Role,
    pub identity: &'a str,
    /// An integration's token (its actions' source is `api`), not a person's.
    pub integration: bool,
}

impl Requestor<'_> {
    /// The source of an action of `kind` this requestor asks for by hand.
    pub fn source_for(&self, kind: ActionKind) -> ActionSource {
        if self.integration {
            ActionSource::Api
        } else if matches!(kind, ActionKind::KillProcess | ActionKind::RemovePersistence | ActionKind::DeleteFile) {
            ActionSource::LiveResponse
        } else {
            ActionSource::ManualDeviceAction
        }
    }

    /// Whether this requestor is the one who asked for `action`.
    fn asked_for(&self, action: &Action) -> bool {
        if action.requestor_identity.is_empty() {
            action.requestor == self.name
        } else {
            action.requestor_identity == self.identity
        }
    }
}

/// A request to run an action on a device.
pub struct Request<'a> {
    pub device: Uuid,
    pub kind: ActionKind,
    pub params: Value,
    pub comment: &'a str,
    pub source: ActionSource,
    pub investigation_id: Option<&'a str>,
    /// Automation asks for approval explicitly (its table decides).
    pub needs_approval: bool,
    /// The action this one undoes (set only by [`ActionCenter::undo`]).
    pub undoes: Option<Uuid>,
}

pub struct ActionCenter {
    pub store: Store,
    pub gateway: Arc<Gateway>,
    pub policy: ActionPolicy,
    /// The click listener, when there is one: a URL block made or lifted
    /// here is in force there before the action reports its result.
    pub clicks: std::sync::OnceLock<Arc<crate::click::ClickService>>,
    /// How long an offboarded device's history is kept.
    pub offboard_retention: Duration,
}

/// Largest accepted `params` object, serialised.
const MAX_PARAMS_BYTES: usize = 64 * 1024;

/// An isolation exclusion written `cidr=NET[,protocol=tcp|udp|any]
/// [,port=N][,direction=outbound|inbound|both]` (picketctl's `--exclude`
/// and the console's form) as the `isolate` parameters' object; the
/// values themselves are checked with the rest of the parameters.
pub fn parse_exclusion(spec: &str) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for part in spec.trim().split(',') {
        let (key, value) = part.trim().split_once('=').ok_or_else(|| format!("{spec:?}: expected key=value pairs"))?;
        let value = match key {
            "cidr" | "protocol" | "direction" => Value::String(value.to_string()),
            "port" => Value::from(value.parse::<u16>().map_err(|_| format!("bad port {value:?}"))?),
            other => return Err(format!("unknown key {other:?} (cidr, protocol, port, direction)")),
        };
        out.insert(key.to_string(), value);
    }
    if !out.contains_key("cidr") {
        return Err(format!("{spec:?}: cidr= is required"));
    }
    Ok(Value::Object(out))
}

/// Whether `s` has a character a person can see: what a required comment
/// must have. The API's schemas say the same with the pattern
/// `[^\s\x00-\x1f\x7f-\x9f]`.
pub fn visible(s: &str) -> bool {
    s.chars().any(|c| !c.is_whitespace() && !c.is_control())
}

impl ActionCenter {
    /// Create an action, or return the live one with the same kind, params and
    /// device. `Ok((action, created))`.
    pub async fn create(&self, who: &Requestor<'_>, req: Request<'_>) -> Result<(Action, bool), ActionError> {
        require(who, self.policy.role_to_ask(req.kind))?;
        if req.source.is_automated() && req.kind == ActionKind::HardDeleteEmail {
            return Err(ActionError::Forbidden(
                "automation never hard-deletes mail: a person asks, another approves".into(),
            ));
        }
        if !req.params.is_object() {
            return Err(ActionError::Invalid("params must be a JSON object".into()));
        }
        let params = req.params.to_string(); // serde_json maps are sorted: this is canonical
        if params.len() > MAX_PARAMS_BYTES {
            return Err(ActionError::Invalid(format!("params larger than {MAX_PARAMS_BYTES} bytes")));
        }
        picket_common::actions::params::check(req.kind, &params).map_err(ActionError::Invalid)?;
        if !req.source.is_automated() && !visible(req.comment) {
            return Err(ActionError::Invalid("a comment is required on manual actions".into()));
        }
        let device = self
            .store
            .device(req.device)
            .await?
            .ok_or_else(|| ActionError::NotFound(format!("no device {}", req.device)))?;
        if device.status != DeviceStatus::Active {
            return Err(ActionError::Conflict(format!(
                "device {} is {:?}: it takes no actions",
                device.id, device.status
            )));
        }
        if req.kind.on_coordinator() && device.mail_domains.is_none() {
            return Err(ActionError::Conflict(format!(
                "{} is not a mail host: {} applies to the links a mail host wraps",
                device.hostname, req.kind
            )));
        }
        if !req.kind.on_coordinator()
            && !device.capabilities.is_empty()
            && !device.capabilities.iter().any(|c| c == req.kind.as_str())
        {
            return Err(ActionError::Conflict(format!(
                "the agent on {} cannot run {} (it supports: {})",
                device.hostname,
                req.kind,
                device.capabilities.join(", ")
            )));
        }
        // Whatever the source: the kinds the policy lists for people and
        // integrations, and what always needs a second person.
        let needs_approval = req.needs_approval
            || (!req.source.is_automated() && self.policy.approval_required(req.kind))
            || self.policy.always_needs_approval(req.kind, &req.params).is_some();
        let (status, expires_at) = if needs_approval {
            (ActionStatus::PendingApproval, now_ms() + self.policy.pending_expiry_ms())
        } else {
            (ActionStatus::Queued, now_ms() + self.policy.queued_expiry_ms())
        };
        // One package collection at a time per device, whatever its params.
        let dedupe = if req.kind == ActionKind::CollectPackage {
            dedupe_key(req.kind, device.id, "{}")
        } else {
            dedupe_key(req.kind, device.id, &params)
        };
        let (action, created) = self
            .store
            .insert_action(&NewAction {
                kind: req.kind,
                params: &params,
                device_id: device.id,
                source: req.source,
                requestor: who.name,
                requestor_identity: who.identity,
                comment: req.comment,
                investigation_id: req.investigation_id,
                status,
                dedupe_key: &dedupe,
                undoes: req.undoes,
                expires_at,
            })
            .await?;
        if !created && req.kind == ActionKind::CollectPackage {
            return Err(ActionError::Conflict(format!(
                "a package collection is already {} on this device: action {}",
                action.status.as_str(),
                action.id
            )));
        }
        if created {
            tracing::info!(action = %action.id, kind = %action.kind, device = %device.id, status = action.status.as_str(), by = who.name, "action created");
            if action.status == ActionStatus::Queued && action.kind.on_coordinator() {
                self.run_here(&action).await;
                return Ok((self.get(action.id).await?, created));
            }
            if action.status == ActionStatus::Queued {
                self.dispatch(action.device_id);
            }
        }
        Ok((action, created))
    }

    /// Approve a pending action: `pending_approval → approved → queued`.
    pub async fn approve(&self, who: &Requestor<'_>, id: Uuid, comment: &str) -> Result<Action, ActionError> {
        match self.approve_many(who, &[id], comment).await?.pop() {
            Some(Ok(())) => self.get(id).await,
            Some(Err(e)) => Err(e),
            None => Err(ActionError::NotFound(format!("no action {id}"))),
        }
    }

    /// Approve several actions in one transaction (`pending_approval →
    /// approved → queued`, both transitions logged); each id gets its own
    /// outcome (not found, not pending, two-person rule, or done). Their
    /// devices get them at once.
    pub async fn approve_many(
        &self,
        who: &Requestor<'_>,
        ids: &[Uuid],
        comment: &str,
    ) -> Result<Vec<Result<(), ActionError>>, ActionError> {
        require(who, Role::Approver)?;
        let found: std::collections::HashMap<Uuid, Action> =
            self.store.actions_by_id(ids).await?.into_iter().map(|a| (a.id, a)).collect();
        let self_approval = |a: &Action| self.policy.two_person(a.kind) && who.asked_for(a);
        let eligible: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| found.get(id).is_some_and(|a| a.status == ActionStatus::PendingApproval && !self_approval(a)))
            .collect();
        let now = now_ms();
        let path = [
            Move { step: Step::Approve, actor: who.name, comment },
            Move { step: Step::Queue, actor: "coordinator", comment: "" },
        ];
        let changes = Changes {
            decided_by: Some(who.name),
            decision_comment: Some(comment),
            queued_at: Some(now),
            expires_at: Some(Some(now + self.policy.queued_expiry_ms())),
            ..Changes::default()
        };
        let done: std::collections::HashSet<Uuid> =
            self.store.transition_many(&eligible, &path, &changes).await?.into_iter().collect();
        // The coordinator's own kinds run here, now.
        for id in &done {
            if let Some(a) = found.get(id).filter(|a| a.kind.on_coordinator()) {
                let queued = Action { status: ActionStatus::Queued, ..a.clone() };
                self.run_here(&queued).await;
            }
        }
        // Connected devices get theirs at once: they are marked `sent` before
        // this returns, and framed right after.
        let mut devices: Vec<Uuid> = done.iter().filter_map(|id| found.get(id)).map(|a| a.device_id).collect();
        devices.sort();
        devices.dedup();
        let frames = self.gateway.claim_deliveries(&devices).await;
        if !frames.is_empty() {
            let gateway = self.gateway.clone();
            tokio::spawn(async move { gateway.send_actions(frames).await });
        }
        let queued = done;
        Ok(ids
            .iter()
            .map(|id| match found.get(id) {
                _ if queued.contains(id) => Ok(()),
                None => Err(ActionError::NotFound(format!("no action {id}"))),
                Some(a) if self_approval(a) => Err(two_person(who, a)),
                Some(a) => Err(self.not_in(a, "pending approval")),
            })
            .collect())
    }

    pub async fn reject(&self, who: &Requestor<'_>, id: Uuid, comment: &str) -> Result<Action, ActionError> {
        let action = self.decidable(who, id).await?;
        let rejected = self
            .store
            .transition(id, Step::Reject, who.name, comment, &closing_decision(who, comment))
            .await?
            .ok_or_else(|| self.not_in(&action, "pending approval"))?;
        Ok(rejected)
    }

    /// Cancel an action the agent has not started: `queued | sent → cancelled`.
    pub async fn cancel(&self, who: &Requestor<'_>, id: Uuid, comment: &str) -> Result<Action, ActionError> {
        require(who, Role::Responder)?;
        let action = self.get(id).await?;
        let cancelled = self
            .store
            .transition(id, Step::Cancel, who.name, comment, &closing_decision(who, comment))
            .await?
            .ok_or_else(|| self.not_in(&action, "queued or sent (the agent has not started it)"))?;
        if action.status == ActionStatus::Sent {
            self.gateway.cancel_on_device(action.device_id, id).await;
        }
        Ok(cancelled)
    }

    /// Undo a succeeded action by creating its inverse, linked both ways.
    pub async fn undo(&self, who: &Requestor<'_>, id: Uuid, comment: &str) -> Result<(Action, bool), ActionError> {
        require(who, Role::Responder)?;
        let original = self.get(id).await?;
        let kind = original.kind;
        let undo = kind.spec().undo.ok_or_else(|| {
            let undoable: Vec<&str> = ActionKind::SPECS.iter().filter(|s| s.undo.is_some()).map(|s| s.name).collect();
            ActionError::Conflict(format!("{kind} cannot be undone; these can: {}", undoable.join(", ")))
        })?;
        if original.status != ActionStatus::Succeeded {
            return Err(ActionError::Conflict(format!(
                "only a succeeded action can be undone; this one is {}",
                original.status.as_str()
            )));
        }
        if let Some(by) = original.undone_by {
            return Err(ActionError::Conflict(format!("already undone by action {by}")));
        }
        let params = (undo.params)(&id.to_string(), original.result.as_deref().unwrap_or_default())
            .map_err(|e| ActionError::Conflict(format!("cannot undo {id}: {e}")))?;
        let params: Value =
            serde_json::from_str(&params).map_err(|e| ActionError::Conflict(format!("cannot build the undo: {e}")))?;
        let undo_kind = undo.kind;
        let source = who.source_for(undo_kind);
        let comment = if comment.trim().is_empty() { format!("undo of {id}") } else { comment.to_string() };
        self.create(
            who,
            Request {
                device: original.device_id,
                kind: undo_kind,
                params,
                comment: &comment,
                source,
                investigation_id: original.investigation_id.as_deref(),
                needs_approval: false,
                undoes: Some(id),
            },
        )
        .await
    }

    pub async fn get(&self, id: Uuid) -> Result<Action, ActionError> {
        self.store.action(id).await?.ok_or_else(|| ActionError::NotFound(format!("no action {id}")))
    }

    /// Load an action an approver may decide on.
    async fn decidable(&self, who: &Requestor<'_>, id: Uuid) -> Result<Action, ActionError> {
        require(who, Role::Approver)?;
        let action = self.get(id).await?;
        if self.policy.two_person(action.kind) && who.asked_for(&action) {
            return Err(two_person(who, &action));
        }
        Ok(action)
    }

    fn not_in(&self, action: &Action, wanted: &str) -> ActionError {
        ActionError::Conflict(format!("action {} is {}, not {wanted}", action.id, action.status.as_str()))
    }

    fn dispatch(&self, device: Uuid) {
        let gateway = self.gateway.clone();
        tokio::spawn(async move { gateway.deliver(device).await });
    }

    /// Expire what waited too long, every `interval`, until `shutdown`.
    pub async fn run_expiry(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.expire_once().await {
                tracing::warn!(%error, "action expiry pass failed");
            }
            let before = now_ms() - i64::try_from(self.offboard_retention.as_millis()).unwrap_or(i64::MAX / 2);
            match self.store.purge_offboarded(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(devices = n, "purged offboarded devices past their retention"),
                Err(error) => tracing::warn!(%error, "purge of offboarded devices failed"),
            }
        }
    }

    /// Pending approvals past their deadline → `expired`; queued or sent
    /// actions of devices that stayed offline past theirs → `timed_out`.
    pub async fn expire_once(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut changed = 0;
        for a in self.store.actions_past_deadline(&[ActionStatus::PendingApproval], now).await? {
            let done = self
                .store
                .transition(
                    a.id,
                    Step::Expire,
                    "coordinator",
                    "nobody decided before the deadline",
                    &Changes { expires_at: Some(None), ..Changes::default() },
                )
                .await?;
            changed += usize::from(done.is_some());
        }
        for a in self.store.actions_past_deadline(&[ActionStatus::Queued, ActionStatus::Sent], now).await? {
            if self.gateway.session(&a.device_id).is_some() {
                continue; // online: it is being delivered
            }
            let done = self
                .store
                .transition(
                    a.id,
                    Step::TimeOut,
                    "coordinator",
                    "the device stayed offline past the deadline",
                    &Changes { expires_at: Some(None), ..Changes::default() },
                )
                .await?;
            changed += usize::from(done.is_some());
        }
        if changed > 0 {
            tracing::info!(changed, "actions expired or timed out");
        }
        Ok(changed)
    }
}

/// The changes of a decision that ends an action (reject, cancel): who
/// decided, why, and no deadline any more.
fn closing_decision<'a>(who: &Requestor<'a>, comment: &'a str) -> Changes<'a> {
    Changes {
        decided_by: Some(who.name),
        decision_comment: Some(comment),
        expires_at: Some(None),
        ..Changes::default()
    }
}

/// The refusal of the two-person rule.
fn two_person(who: &Requestor<'_>, action: &Action) -> ActionError {
    ActionError::Forbidden(format!(
        "two-person rule: {} asked for this action (token {:?}); the same person cannot also decide it with token {:?}",
        who.identity, action.requestor, who.name
    ))
}

fn require(who: &Requestor<'_>, role: Role) -> Result<(), ActionError> {
    if who.role >= role {
        Ok(())
    } else {
        Err(ActionError::Forbidden(format!(
            "this needs the {} role; token {:?} has {}",
            role.as_str(),
            who.name,
            who.role.as_str()
        )))
    }
}

/// SHA-256 of kind, device and canonical params: equal requests share it.
pub fn dedupe_key(kind: ActionKind, device: Uuid, canonical_params: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str());
    h.update([0]);
    h.update(device.to_string());
    h.update([0]);
    h.update(canonical_params);
    hex::encode(h.finalize())
}
