//! Automated investigations: alert → verdict → remediation → evidence.
//!
//! A loop (every second) does all the work, so nothing depends on a hook
//! firing and a restart loses nothing:
//! 1. every path of an alert that no investigation handles yet (a new
//!    alert, the same file seen at another path, or again after its
//!    investigation ended) opens an investigation of that path; `POST
//!    /devices/{id}/investigations` opens one by hand;
//! 2. the verdict comes from the coordinator's own knowledge, never from
//!    the severity the device reported: its indicators (allow = no threats
//!    found, block = malicious), else the severity of the rule as the
//!    coordinator compiled its bundle (the built-in rules are known too); a
//!    rule the coordinator did not distribute (a device's local rule, or a
//!    made-up name) is `suspicious` at most, so it never remediates
//!    without an approver;
//! 3. a threat's own file is dealt with first: `stop_and_quarantine` with
//!    the SHA-256 the coordinator decided on (the agent refuses if the file
//!    no longer has it), automatic or pending as [`decide`] says for the
//!    device group's automation level and the folder class; then
//!    `collect_evidence` looks at processes, persistence and other copies
//!    (only files of the same size are read, within a time and byte budget,
//!    with progress); each copy with the same hash gets its own
//!    `stop_and_quarantine`;
//! 4. the status follows its actions: `pending_approval` while any waits for
//!    a decision, `running` while any runs, then `remediated` (all
//!    succeeded), `partially_remediated` (some) or `failed` (none; a
//!    rejected or expired action counts as not done). `terminated_by_user`
//!    cancels what has not run. The alert follows its investigations: in
//!    progress while any runs, resolved when every one ended remediated, with
//!    no threats found or terminated by a person.
//!
//! With automation level `none`, verdicts are given but no remediation
//! action is created: the recommendations are listed and the investigation
//! waits (`pending_approval`) for a person to act or terminate it.
//!
//! Expansion: a threat found on one device proposes an investigation of the
//! same SHA-256 on every other active device; one device's report never
//! acts on another without an approver (`POST
//! /investigations/{id}/approve-expansion`). There, only files the agent
//! finds with that exact hash are quarantined — never a file merely at the
//! same path. Expansions do not expand further.
//!
//! False positives: [`Investigations::classify`].
//!
//! Heuristics give a `suspicious` verdict to evidence beyond the alert's
//! file: a non-package executable running from a temp folder with network
//! sockets (→ `kill_process`) and persistence pointing into a temp folder
//! (→ `remove_persistence`); suspicious means pending approval at every
//! level but `none`.
//!
//! Files: `policy.rs` (levels, folder classes, the decision table),
//! `verdicts.rs` (what the evidence found → verdicts and proposals),
//! `decisions.rs` (what people decide: expansion, termination,
//! classification), and this one (opening, the loop, following actions).

use std::sync::Arc;
use std::time::Duration;

use picket_common::actions::results::EvidenceOutput;
use picket_common::actions::ActionKind;
use picket_common::detection::{IndicatorAction, Severity};
use picket_common::url_blocklist;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::actions::{ActionCenter, ActionError, Request, Requestor};
use crate::clock::now_ms;
mod decisions;
mod email;
mod policy;
mod verdicts;

pub use policy::{decide, Decision, FolderClass, InvestigationConfig, Level};

use crate::store::{ActionSource, ActionStatus, Alert, AlertStatus, Investigation, Role, Store};

pub struct Investigations {
    pub store: Store,
    pub center: Arc<ActionCenter>,
    pub config: InvestigationConfig,
}

const AUTOMATION: Requestor<'static> =
    Requestor { name: "automation", role: Role::Admin, identity: "system:automation", integration: false };
/// Closes automation's own actions on termination (the two-person rule
/// forbids a requestor to decide its own action).
const TERMINATION: Requestor<'static> = Requestor {
    name: "investigation-terminated",
    role: Role::Admin,
    identity: "system:investigation-terminated",
    integration: false,
};
const LIVE: [&str; 2] = ["running", "pending_approval"];

fn verdict_name(v: Option<Severity>) -> &'static str {
    v.map(Severity::as_str).unwrap_or("no_threats_found")
}

/// An investigation's status once its evidence is evaluated: no threat →
/// `no_threats_found`; an expansion or a decision waiting for a person →
/// `pending_approval`; remediation under way → `running`; a threat nothing
/// could be proposed for → `failed`.
fn evaluated_status(threat: bool, expansion_waits: bool, any_action: bool, no_response: bool) -> &'static str {
    if !threat {
        "no_threats_found"
    } else if expansion_waits {
        "pending_approval"
    } else if any_action {
        "running"
    } else if no_response {
        "pending_approval"
    } else {
        "failed"
    }
}

impl Investigations {
    /// Open an investigation of `path` on `device`: its own file first, then
    /// the evidence.
    pub async fn open(
        &self,
        device: Uuid,
        alert: Option<&Alert>,
        path: &str,
        sha256: Option<&str>,
        actor: &str,
    ) -> Result<Investigation, ActionError> {
        let email = email::is_mail_path(path);
        // A link the host's blocklist blocks, in a message on the host.
        let link = alert
            .filter(|a| a.rule == url_blocklist::MAIL_RULE && a.namespace == url_blocklist::NAMESPACE)
            .and_then(|_| url_blocklist::link_of_mail_path(path));
        let title = match alert {
            Some(_) if link.is_some() => format!("a blocked link in an email ({path})"),
            Some(a) if email => format!("{} detected in an email attachment ({path})", a.rule),
            Some(a) => format!("{} detected {path}", a.rule),
            None => format!("investigation of {path}"),
        };
        let mut subject = json!({
            "kind": if email { "email" } else { "file" },
            "path": path,
            "sha256": sha256,
            "size": alert.map(|a| a.size),
            "rule": alert.map(|a| a.rule.clone()),
            "namespace": alert.map(|a| a.namespace.clone()),
            "reported_severity": alert.map(|a| a.severity),
        });
        if let Some(url) = link {
            subject["url"] = json!(url);
        }
        self.start(device, alert.map(|a| a.id.to_string()), title, subject, actor).await
    }

    /// What the coordinator itself says of a file: its indicators first,
    /// then the severity it knows for the rule — never the severity the
    /// device reported. `(verdict, why)`; `None` is no threat.
    async fn verdict(&self, subject: &Value, sha256: Option<&str>) -> Result<(Option<Severity>, String), ActionError> {
        if let Some(h) = sha256 {
            let found = self.store.indicators(Some(now_ms())).await?.into_iter().find(|i| i.sha256 == h);
            match found.map(|i| i.action) {
                Some(IndicatorAction::Allow) => return Ok((None, "allow indicator".into())),
                Some(IndicatorAction::Block) => return Ok((Some(Severity::Malicious), "block indicator".into())),
                None => {}
            }
        }
        let (Some(namespace), Some(rule)) = (subject["namespace"].as_str(), subject["rule"].as_str()) else {
            return Ok((None, "no rule or indicator matched".into()));
        };
        Ok(match self.center.gateway.content.rule_severity(namespace, rule) {
            Some(Severity::Informational) => (None, format!("rule {rule} is informational")),
            Some(s) => (Some(s), format!("rule {rule} ({s})")),
            None => (
                Some(Severity::Suspicious),
                format!(
                    "rule {rule} ({namespace}) is not one the coordinator distributes; the device's own severity ({}) is not trusted",
                    subject["reported_severity"].as_str().unwrap_or("none")
                ),
            ),
        })
    }

    /// The automation level of a device's group.
    async fn level_of(&self, device: Uuid) -> Result<(String, Level), ActionError> {
        let group = self.store.device(device).await?.map(|d| d.group).unwrap_or_else(|| "default".into());
        let level = match self.store.device_group(&group).await? {
            Some(g) => Level::parse(&g.automation_level).unwrap_or(Level::SemiAny),
            None => Level::SemiAny,
        };
        Ok((group, level))
    }

    async fn start(
        &self,
        device: Uuid,
        alert_id: Option<String>,
        title: String,
        subject: Value,
        actor: &str,
    ) -> Result<Investigation, ActionError> {
        let now = now_ms();
        let path = subject["path"].as_str().unwrap_or_default().to_string();
        let sha256 = subject["sha256"].as_str().map(str::to_string);
        let inv = Investigation {
            id: Uuid::new_v4(),
            device_id: device,
            alert_id,
            status: "running".into(),
            title,
            subject,
            evidence: Value::Null,
            created_by: actor.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_investigation(&inv).await?;
        self.store.investigation_event(inv.id, actor, "opened", &inv.title).await?;
        if inv.subject["kind"] == "email" {
            self.start_email(&inv).await?;
            tracing::info!(investigation = %inv.id, %device, %path, "email investigation opened");
            return Ok(inv);
        }
        self.link_same_sha256(&inv).await?;
        // The threat's own file first: its remediation does not wait for
        // the search for copies.
        if inv.subject["expanded_from"].is_null() {
            self.remediate_first(&inv).await?;
        }
        let id = inv.id.to_string();
        let params = json!({
            "path": path,
            "sha256": sha256,
            "size": inv.subject["size"],
            "search_paths": self.config.copy_search_paths,
            "temp_folders": self.config.temp_folders,
            "budget_secs": self.config.copy_search_budget_secs,
            "budget_bytes": self.config.copy_search_budget_bytes,
        });
        let created = self
            .center
            .create(
                &AUTOMATION,
                Request {
                    device,
                    kind: ActionKind::CollectEvidence,
                    params,
                    comment: "evidence for an investigation",
                    source: ActionSource::AutomatedDeviceAction,
                    investigation_id: Some(&id),
                    needs_approval: false,
                    undoes: None,
                },
            )
            .await;
        if let Err(e) = created {
            self.store.update_investigation(inv.id, &[], "failed", None).await?;
            self.store
                .investigation_event(inv.id, "automation", "failed", &format!("cannot ask for evidence: {e}"))
                .await?;
            self.settle_alert(&inv).await?;
            return Err(e);
        }
        tracing::info!(investigation = %inv.id, %device, %path, "investigation opened");
        Ok(inv)
    }

    /// Quarantine (or propose quarantining) the investigated file itself
    /// at once when the coordinator's verdict is a threat.
    async fn remediate_first(&self, inv: &Investigation) -> Result<(), ActionError> {
        let (Some(path), Some(sha)) = (inv.subject["path"].as_str(), inv.subject["sha256"].as_str()) else {
            return Ok(());
        };
        let (Some(verdict), why) = self.verdict(&inv.subject, Some(sha)).await? else { return Ok(()) };
        let (_, level) = self.level_of(inv.device_id).await?;
        let decision = decide(level, verdict, self.config.class_of(path));
        if decision == Decision::NoResponse {
            return Ok(());
        }
        let mut entry = Value::Null;
        let params = json!({ "path": path, "expected_sha256": sha });
        let comment = format!("{verdict}: {why}");
        if self.propose(inv, ActionKind::StopAndQuarantine, params, decision, &comment, &mut entry).await {
            let what =
                format!("stop_and_quarantine {path} ({}) before the evidence", format!("{decision:?}").to_lowercase());
            self.store.investigation_event(inv.id, "automation", "file first", &what).await?;
        }
        Ok(())
    }

    /// The loop: open investigations for new alerts, evaluate evidence,
    /// follow remediation. Every second until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.step().await {
                tracing::warn!(%error, "investigation step failed; retrying");
            }
        }
    }

    pub async fn step(&self) -> Result<(), ActionError> {
        if self.config.automatic {
            for (alert, path) in self.store.uninvestigated_alert_paths(100).await? {
                // Informational by the coordinator's own rules — or, for a
                // rule it does not know, by the device's own account (which
                // only spares that device) — needs no investigation.
                let known = self.center.gateway.content.rule_severity(&alert.namespace, &alert.rule);
                if known.unwrap_or(alert.severity) == Severity::Informational {
                    self.store.skip_alert_path(alert.id, &path).await?;
                    continue;
                }
                // A click on a blocked link: the block already stopped it;
                // its evidence is the click log (API `/mail/clicks`), not a
                // file on the mail host.
                if path.starts_with(crate::click::CLICK_PATH) {
                    self.store.skip_alert_path(alert.id, &path).await?;
                    continue;
                }
                // Every message with the attachment is one cluster: one
                // live email investigation per host and SHA-256 covers them.
                if email::is_mail_path(&path) {
                    if let Some(inv) = self.live_email_investigation(alert.device_id, &alert.sha256).await? {
                        self.store.assign_alert_path(alert.id, &path, inv).await?;
                        continue;
                    }
                }
                let opened = self.open(alert.device_id, Some(&alert), &path, Some(&alert.sha256), "automation").await;
                match opened {
                    Ok(inv) => self.store.assign_alert_path(alert.id, &path, inv.id).await?,
                    Err(error) => {
                        tracing::warn!(%error, alert = %alert.id, %path, "could not open an investigation");
                        // Recorded as handled (by the failed investigation),
                        // so the loop does not retry it every second.
                        let failed = self.store.investigations_of_alert(alert.id).await?;
                        if let Some(inv) = failed.iter().rev().find(|i| i.subject["path"] == path.as_str()) {
                            self.store.assign_alert_path(alert.id, &path, inv.id).await?;
                        }
                    }
                }
            }
        }
        for status in LIVE {
            for inv in self.store.investigations(Some(status), None, 500).await? {
                self.follow(&inv).await?;
            }
        }
        Ok(())
    }

    async fn follow(&self, inv: &Investigation) -> Result<(), ActionError> {
        let actions = self.store.investigation_actions(inv.id).await?;
        // The evidence: a file's `collect_evidence`, an email's cluster search.
        let evidence_kind =
            if inv.subject["kind"] == "email" { ActionKind::MailSearch } else { ActionKind::CollectEvidence };
        let remediation: Vec<_> = actions.iter().filter(|a| a.kind != evidence_kind).collect();
        if inv.evidence.is_null() {
            let Some(ev) = actions.iter().find(|a| a.kind == evidence_kind) else {
                return Ok(());
            };
            let result = ev.result.as_deref().unwrap_or_default();
            let why = match ev.status {
                ActionStatus::Succeeded if evidence_kind == ActionKind::MailSearch => {
                    match serde_json::from_str::<picket_common::actions::mail::MailSearchOutput>(result) {
                        Ok(found) => return self.evaluate_email(inv, &found).await,
                        Err(e) => format!("the mail host's answer is unreadable: {e}"),
                    }
                }
                ActionStatus::Succeeded => {
                    match serde_json::from_str::<EvidenceOutput>(result) {
                        Ok(evidence) => return self.evaluate(inv, &evidence).await,
                        // Never read as "nothing found".
                        Err(e) => format!("the device's evidence is unreadable: {e}"),
                    }
                }
                s if !ActionStatus::LIVE.contains(&s) => ev.error.clone().unwrap_or_else(|| s.as_str().to_string()),
                _ => return Ok(()),
            };
            self.store.investigation_event(inv.id, "automation", "no evidence", &format!("no evidence: {why}")).await?;
            if remediation.is_empty() {
                self.store.update_investigation(inv.id, &LIVE, "failed", None).await?;
                return self.settle_alert(inv).await;
            }
            // What was done first still counts.
            let evidence = json!({ "evidence_error": why, "items": [], "remediation": [] });
            self.store.update_investigation(inv.id, &LIVE, &inv.status, Some(&evidence)).await?;
        }
        if inv.evidence["no_response"] == true {
            return Ok(());
        }
        let expansion_waits = inv.evidence["expansion"]["status"] == "pending_approval";
        if remediation.is_empty() && !expansion_waits {
            return Ok(());
        }
        let status = if expansion_waits || remediation.iter().any(|a| a.status == ActionStatus::PendingApproval) {
            "pending_approval"
        } else if remediation.iter().any(|a| ActionStatus::LIVE.contains(&a.status)) {
            "running"
        } else {
            let ok = remediation.iter().filter(|a| a.status == ActionStatus::Succeeded).count();
            if ok == remediation.len() {
                "remediated"
            } else if ok > 0 {
                "partially_remediated"
            } else {
                "failed"
            }
        };
        if status != inv.status && self.store.update_investigation(inv.id, &LIVE, status, None).await? {
            self.store.investigation_event(inv.id, "automation", status, "").await?;
            tracing::info!(investigation = %inv.id, status, "investigation status");
            self.settle_alert(inv).await?;
        }
        Ok(())
    }

    /// The alert follows its investigations: in progress while any is live
    /// or a path waits for one; resolved when every one ended remediated,
    /// with no threats found or terminated by a person; otherwise it stays
    /// in progress for a person to look at.
    async fn settle_alert(&self, inv: &Investigation) -> Result<(), ActionError> {
        let Some(alert) = inv.alert_id.as_deref().and_then(|a| a.parse::<Uuid>().ok()) else { return Ok(()) };
        let waiting = self.store.alert_paths(alert).await?.iter().any(|p| p.investigation_id.is_none());
        let all = self.store.investigations_of_alert(alert).await?;
        if waiting || all.iter().any(|i| LIVE.contains(&i.status.as_str())) {
            return Ok(());
        }
        let settled = ["remediated", "no_threats_found", "terminated_by_user"];
        if all.iter().all(|i| settled.contains(&i.status.as_str())) {
            let why = format!("{} investigation(s) ended", all.len());
            self.store.set_alert_status(alert, AlertStatus::Resolved, "automation", &why).await?;
        }
        Ok(())
    }

    /// Create one remediation action of `inv`, automatic or pending as
    /// `decision` says; records the action id (or the error) in `entry`.
    async fn propose(
        &self,
        inv: &Investigation,
        kind: ActionKind,
        params: Value,
        decision: Decision,
        comment: &str,
        entry: &mut Value,
    ) -> bool {
        let id = inv.id.to_string();
        let request = Request {
            device: inv.device_id,
            kind,
            params,
            comment,
            source: ActionSource::AutomatedDeviceAction,
            investigation_id: Some(&id),
            needs_approval: decision == Decision::Pending,
            undoes: None,
        };
        match self.center.create(&AUTOMATION, request).await {
            Ok((a, _)) => {
                entry["action_id"] = json!(a.id);
                true
            }
            Err(e) => {
                entry["error"] = json!(e.to_string());
                false
            }
        }
    }
}
