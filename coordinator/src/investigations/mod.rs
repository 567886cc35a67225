//! Automated investigations: alert → evidence → verdicts → remediation.
//!
//! A loop (every second) does all the work, so nothing depends on a hook
//! firing and a restart loses nothing:
//! 1. every alert with status `new` (not informational) opens an
//!    investigation (the alert goes `in_progress`); `POST
//!    /devices/{id}/investigations` opens one by hand;
//! 2. an investigation starts with a `collect_evidence` action on the device:
//!    the file, the processes running it (parents, connections), the
//!    persistence referencing it, other copies by SHA-256;
//! 3. when the evidence is in, each piece gets a verdict — the file's from
//!    the alert (rule severity) or the indicators (block = malicious, allow =
//!    no threats found, overriding the rule); copies, processes and
//!    persistence share the file's — and each copy of a malicious or
//!    suspicious file gets `stop_and_quarantine` (which also kills its
//!    processes and removes its persistence), queued automatically or
//!    pending approval as [`decide`] says for the device group's automation
//!    level and the file's folder class;
//! 4. the status follows its actions: `pending_approval` while any waits for
//!    a decision, `running` while any runs, then `remediated` (all
//!    succeeded), `partially_remediated` (some) or `failed` (none; a
//!    rejected or expired action counts as not done). `terminated_by_user`
//!    cancels what has not run.
//!
//! With automation level `none`, verdicts are given but no remediation
//! action is created: the recommendations are listed and the investigation
//! waits (`pending_approval`) for a person to act or terminate it.
//!
//! Expansion: a threat found on one device opens an investigation of the
//! same file (by SHA-256: its copies in each device's search places) on every
//! other active device — at once below `expansion_approval_threshold` (10)
//! devices, after an approver's `POST /investigations/{id}/approve-expansion`
//! at or above it. Expansions do not expand further.
//!
//! False positives: [`Investigations::classify`].
//!
//! Heuristics give a `suspicious` verdict to evidence beyond the alert's
//! file: a non-package executable running from a temp folder with network
//! sockets (→ `kill_process`) and persistence pointing into a temp folder
//! (→ `remove_persistence`); suspicious means pending approval at every
//! level but `none`.

use std::sync::Arc;
use std::time::Duration;

use picket_common::actions::ActionKind;
use picket_common::detection::{IndicatorAction, Severity};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::actions::{ActionCenter, ActionError, Request, Requestor};
use crate::store::{now_ms, ActionSource, ActionStatus, Alert, AlertFilter, AlertStatus, Investigation, Role, Store};

/// The five automation levels of a device group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Full,
    SemiAny,
    SemiCore,
    SemiNonTemp,
    None,
}

impl Level {
    pub const NAMES: [&'static str; 5] = ["full", "semi_any", "semi_core", "semi_non_temp", "none"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "semi_any" => Some(Self::SemiAny),
            "semi_core" => Some(Self::SemiCore),
            "semi_non_temp" => Some(Self::SemiNonTemp),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderClass {
    Core,
    Temp,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Automatic,
    Pending,
    NoResponse,
}

/// DESIGN.md's table: what happens to the remediation of evidence with
/// `verdict` in a folder of `class` under automation `level`.
pub fn decide(level: Level, verdict: Severity, class: FolderClass) -> Decision {
    use Decision::*;
    match (level, verdict) {
        (Level::None, _) => NoResponse,
        (_, Severity::Informational) => NoResponse,
        (_, Severity::Suspicious) => Pending,
        (Level::Full, Severity::Malicious) => Automatic,
        (Level::SemiAny, Severity::Malicious) => Pending,
        (Level::SemiCore, Severity::Malicious) => {
            if class == FolderClass::Core {
                Pending
            } else {
                Automatic
            }
        }
        (Level::SemiNonTemp, Severity::Malicious) => {
            if class == FolderClass::Temp {
                Automatic
            } else {
                Pending
            }
        }
    }
}

/// `[investigations]` in the coordinator config: the folder classes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvestigationConfig {
    /// Open an investigation for every new alert (manual ones work either way).
    pub automatic: bool,
    /// Folders whose files are "core" (a `*` component matches any one name).
    pub core_folders: Vec<String>,
    /// Folders whose files are "temp".
    pub temp_folders: Vec<String>,
    /// Where the agent looks for other copies (empty: its quick-scan places).
    pub copy_search_paths: Vec<String>,
    /// Expanding an investigation to this many other devices or more waits
    /// for an approver.
    pub expansion_approval_threshold: usize,
}

impl Default for InvestigationConfig {
    fn default() -> Self {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        Self {
            automatic: true,
            core_folders: v(&["/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/boot"]),
            temp_folders: v(&[
                "/tmp",
                "/var/tmp",
                "/dev/shm",
                "/run/user/*",
                "/home/*/Downloads",
                "/home/*/.cache",
                "/root/Downloads",
                "/root/.cache",
            ]),
            copy_search_paths: Vec::new(),
            expansion_approval_threshold: 10,
        }
    }
}

/// Whether `path` is inside `folder` (`*` matches one component).
fn inside(path: &str, folder: &str) -> bool {
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let f: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
    p.len() > f.len() && f.iter().zip(&p).all(|(a, b)| *a == "*" || a == b)
}

impl InvestigationConfig {
    pub fn class_of(&self, path: &str) -> FolderClass {
        // Temp first: /tmp is not core even where /usr-like rules would match.
        if self.temp_folders.iter().any(|f| inside(path, f)) {
            FolderClass::Temp
        } else if self.core_folders.iter().any(|f| inside(path, f)) {
            FolderClass::Core
        } else {
            FolderClass::Other
        }
    }
}

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

impl Investigations {
    /// Open an investigation of `path` on `device` and ask for evidence.
    pub async fn open(
        &self,
        device: Uuid,
        alert: Option<&Alert>,
        path: &str,
        sha256: Option<&str>,
        actor: &str,
    ) -> Result<Investigation, ActionError> {
        let title = match alert {
            Some(a) => format!("{} detected {}", a.rule, a.path),
            None => format!("investigation of {path}"),
        };
        let subject = json!({
            "path": path,
            "sha256": sha256,
            "rule": alert.map(|a| a.rule.clone()),
            "severity": alert.map(|a| a.severity),
        });
        self.start(device, alert.map(|a| a.id.to_string()), title, subject, actor).await
    }

    /// Open the investigations an expansion decided: the same file looked
    /// for on each device, with the verdict it had where it was found.
    async fn expand(
        &self,
        parent: &Investigation,
        devices: &[Uuid],
        verdict: &str,
        actor: &str,
    ) -> Result<(), ActionError> {
        for device in devices {
            let subject = json!({
                "path": parent.subject["path"],
                "sha256": parent.evidence["items"][0]["sha256"].as_str().or(parent.subject["sha256"].as_str()),
                "rule": parent.subject["rule"],
                "severity": verdict,
                "expanded_from": parent.id,
            });
            let title = format!("expansion of {}: {}", parent.id, parent.subject["path"].as_str().unwrap_or(""));
            if let Err(error) = self.start(*device, None, title, subject, actor).await {
                tracing::warn!(%error, %device, "could not expand an investigation");
            }
        }
        self.store.investigation_event(parent.id, actor, "expanded", &format!("to {} devices", devices.len())).await?;
        Ok(())
    }

    /// Approve a pending expansion (approver).
    pub async fn approve_expansion(&self, id: Uuid, who: &Requestor<'_>) -> Result<Investigation, ActionError> {
        if who.role < Role::Approver {
            return Err(ActionError::Forbidden("expanding to many devices needs the approver role".into()));
        }
        let inv = self
            .store
            .investigation(id)
            .await?
            .ok_or_else(|| ActionError::NotFound(format!("no investigation {id}")))?;
        if inv.evidence["expansion"]["status"] != "pending_approval" {
            return Err(ActionError::Conflict(format!("investigation {id} has no expansion waiting for approval")));
        }
        let devices: Vec<Uuid> = inv.evidence["expansion"]["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().and_then(|s| s.parse().ok()))
            .collect();
        let mut evidence = inv.evidence.clone();
        evidence["expansion"]["status"] = json!("approved");
        evidence["expansion"]["approved_by"] = json!(who.name);
        self.store.update_investigation(id, &[], &inv.status, Some(&evidence)).await?;
        let verdict = inv.evidence["verdict"].as_str().unwrap_or("malicious").to_string();
        self.expand(&inv, &devices, &verdict, who.name).await?;
        let inv = self.store.investigation(id).await?.unwrap_or(inv);
        Box::pin(self.follow(&inv)).await?;
        Ok(self.store.investigation(id).await?.unwrap_or(inv))
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
        let id = inv.id.to_string();
        let params = json!({ "path": path, "sha256": sha256, "search_paths": self.config.copy_search_paths,
            "temp_folders": self.config.temp_folders });
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
            return Err(e);
        }
        tracing::info!(investigation = %inv.id, %device, %path, "investigation opened");
        Ok(inv)
    }

    /// Cancel what has not run and end the investigation.
    pub async fn terminate(&self, id: Uuid, who: &Requestor<'_>, comment: &str) -> Result<Investigation, ActionError> {
        let inv = self
            .store
            .investigation(id)
            .await?
            .ok_or_else(|| ActionError::NotFound(format!("no investigation {id}")))?;
        if !LIVE.contains(&inv.status.as_str()) {
            return Err(ActionError::Conflict(format!("investigation {id} already ended ({})", inv.status)));
        }
        for a in self.store.investigation_actions(id).await? {
            let closed = match a.status {
                ActionStatus::PendingApproval => {
                    self.center.reject(&TERMINATION, a.id, "investigation terminated").await
                }
                ActionStatus::Queued | ActionStatus::Sent => {
                    self.center.cancel(&TERMINATION, a.id, "investigation terminated").await
                }
                _ => continue,
            };
            if let Err(error) = closed {
                tracing::warn!(%error, action = %a.id, "could not close an action of a terminated investigation");
            }
        }
        self.store.update_investigation(id, &LIVE, "terminated_by_user", None).await?;
        self.store.investigation_event(id, who.name, "terminated_by_user", comment).await?;
        Ok(self.store.investigation(id).await?.unwrap_or(inv))
    }

    /// A person's classification of an alert. A false positive undoes every
    /// action its investigations took (quarantined files come back), stops
    /// those still running, adds an allow indicator for the file and
    /// suppresses the same (SHA-256, rule) from then on. Returns what was done.
    pub async fn classify(
        &self,
        alert_id: Uuid,
        classification: &str,
        who: &Requestor<'_>,
        comment: &str,
    ) -> Result<Value, ActionError> {
        if !["true_positive", "informational", "false_positive"].contains(&classification) {
            return Err(ActionError::Invalid(format!(
                "classification {classification:?}: true_positive, informational or false_positive"
            )));
        }
        let alert =
            self.store.alert(alert_id).await?.ok_or_else(|| ActionError::NotFound(format!("no alert {alert_id}")))?;
        let mut undone = Vec::new();
        let mut indicator = Value::Null;
        if classification == "false_positive" {
            if who.role < Role::Approver {
                return Err(ActionError::Forbidden(
                    "a false positive undoes actions and allows the file: it needs the approver role".into(),
                ));
            }
            let why =
                if comment.is_empty() { "false positive".to_string() } else { format!("false positive: {comment}") };
            for inv in self.store.investigations_of_alert(alert_id).await? {
                if LIVE.contains(&inv.status.as_str()) {
                    self.terminate(inv.id, who, &why).await?;
                }
                for a in self.store.investigation_actions(inv.id).await? {
                    let undoable = ActionKind::parse(&a.kind).and_then(ActionKind::undo).is_some();
                    if undoable && a.status == ActionStatus::Succeeded && a.undone_by.is_none() {
                        let (undo, _) = self.center.undo(who, a.id, &why).await?;
                        undone.push(json!({ "action": a.id, "undo": undo.id, "kind": undo.kind }));
                    }
                }
                self.store.investigation_event(inv.id, who.name, "false positive", &why).await?;
            }
            let allow = crate::store::Indicator {
                sha256: alert.sha256.clone(),
                action: IndicatorAction::Allow,
                comment: format!("{why} (alert {alert_id})"),
                created_by: who.name.to_string(),
                created_at: now_ms(),
                expires_at: None,
            };
            self.store.put_indicator(&allow).await?;
            if let Some(msg) = self.center.gateway.content.reload_indicators(&self.store).await? {
                self.center.gateway.publish(msg);
            }
            indicator = json!({ "sha256": alert.sha256, "action": "allow" });
        }
        self.store.classify_alert(&alert, classification, who.name, comment).await?;
        self.center.gateway.events.changed();
        Ok(json!({ "alert_id": alert_id, "classification": classification, "undone": undone, "indicator": indicator,
            "suppressed": classification == "false_positive" }))
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
        let new = if self.config.automatic {
            self.store
                .alerts(&AlertFilter { status: Some(AlertStatus::New), ..Default::default() }, None, 100)
                .await?
                .items
        } else {
            Vec::new()
        };
        for alert in new.iter().filter(|a| a.severity != Severity::Informational) {
            self.store
                .set_alert_status(alert.id, AlertStatus::InProgress, "automation", "investigation opened")
                .await?;
            if let Err(error) =
                self.open(alert.device_id, Some(alert), &alert.path, Some(&alert.sha256), "automation").await
            {
                tracing::warn!(%error, alert = %alert.id, "could not open an investigation");
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
        if inv.evidence.is_null() {
            let Some(ev) = actions.iter().find(|a| a.kind == ActionKind::CollectEvidence.as_str()) else {
                return Ok(());
            };
            match ev.status {
                ActionStatus::Succeeded => {
                    let result: Value =
                        ev.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
                    self.evaluate(inv, &result).await?;
                }
                s if !ActionStatus::LIVE.contains(&s) => {
                    self.store.update_investigation(inv.id, &LIVE, "failed", None).await?;
                    let why = ev.error.clone().unwrap_or_else(|| s.as_str().to_string());
                    self.store
                        .investigation_event(inv.id, "automation", "failed", &format!("no evidence: {why}"))
                        .await?;
                }
                _ => {}
            }
            return Ok(());
        }
        if inv.evidence["no_response"] == true {
            return Ok(());
        }
        let expansion_waits = inv.evidence["expansion"]["status"] == "pending_approval";
        let remediation: Vec<_> = actions.iter().filter(|a| a.kind != ActionKind::CollectEvidence.as_str()).collect();
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

    /// Give verdicts and decide the remediation.
    async fn evaluate(&self, inv: &Investigation, result: &Value) -> Result<(), ActionError> {
        let file = &result["file"];
        let sha = file["sha256"].as_str().or(inv.subject["sha256"].as_str()).map(str::to_string);
        let indicator = match &sha {
            Some(h) => {
                self.store.indicators(Some(now_ms())).await?.into_iter().find(|i| i.sha256 == *h).map(|i| i.action)
            }
            None => None,
        };
        let rule_verdict = inv.subject["severity"].as_str().and_then(Severity::parse);
        let verdict = match indicator {
            Some(IndicatorAction::Allow) => None,
            Some(IndicatorAction::Block) => Some(Severity::Malicious),
            None => rule_verdict.filter(|v| *v != Severity::Informational),
        };
        let why = match (indicator, rule_verdict) {
            (Some(IndicatorAction::Allow), _) => "allow indicator".to_string(),
            (Some(IndicatorAction::Block), _) => "block indicator".to_string(),
            (None, Some(v)) => format!("rule {} ({v})", inv.subject["rule"].as_str().unwrap_or("?")),
            (None, None) => "no rule or indicator matched".to_string(),
        };
        let device = self.store.device(inv.device_id).await?;
        let group = device.as_ref().map(|d| d.group.clone()).unwrap_or_else(|| "default".into());
        let level = match self.store.device_group(&group).await? {
            Some(g) => Level::parse(&g.automation_level).unwrap_or(Level::SemiAny),
            None => Level::SemiAny,
        };
        let mut paths: Vec<String> = Vec::new();
        if file["exists"] == true {
            paths.extend(file["path"].as_str().map(str::to_string));
        }
        paths.extend(result["copies"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_string)));
        let v = verdict_name(verdict);
        let mut items = vec![json!({ "type": "file", "path": file["path"], "sha256": sha, "verdict": v, "why": why })];
        items.extend(
            paths
                .iter()
                .skip(usize::from(file["exists"] == true))
                .map(|p| json!({ "type": "copy", "path": p, "sha256": sha, "verdict": v })),
        );
        for p in result["processes"].as_array().into_iter().flatten() {
            items.push(json!({ "type": "process", "pid": p["pid"], "executable": p["executable"], "parent": p["parent_executable"],
                "connections": p["connections"], "verdict": v, "remediation": "killed by the file's quarantine" }));
        }
        for p in result["persistence"].as_array().into_iter().flatten() {
            items.push(json!({ "type": "persistence", "what": p["what"], "verdict": v, "remediation": "removed by the file's quarantine" }));
        }
        let mut remediation = Vec::new();
        let mut any_action = false;
        let mut no_response = false;
        if let Some(verdict) = verdict {
            for path in &paths {
                let class = self.config.class_of(path);
                let decision = decide(level, verdict, class);
                let mut entry = json!({ "kind": "stop_and_quarantine", "path": path, "folder_class": format!("{class:?}").to_lowercase(),
                    "decision": format!("{decision:?}").to_lowercase() });
                if decision == Decision::NoResponse {
                    no_response = true;
                    remediation.push(entry);
                    continue;
                }
                let params = json!({ "path": path });
                any_action |= self
                    .propose(inv, ActionKind::StopAndQuarantine, params, decision, &format!("{v}: {why}"), &mut entry)
                    .await;
                remediation.push(entry);
            }
        }
        // Heuristics (suspicious): a non-package executable running from a
        // temp folder with network sockets → kill_process; persistence that
        // points into a temp folder → remove_persistence.
        let mut heuristic: Vec<(ActionKind, Value, String)> = Vec::new();
        for p in result["temp_processes"].as_array().into_iter().flatten() {
            let why = "a non-package executable in a temp folder with network connections".to_string();
            items.push(
                json!({ "type": "process", "pid": p["pid"], "executable": p["executable"], "sha256": p["sha256"],
                "connections": p["connections"], "verdict": "suspicious", "why": why }),
            );
            heuristic.push((ActionKind::KillProcess, json!({ "pid": p["pid"], "sha256": p["sha256"] }), why));
        }
        for p in result["temp_persistence"].as_array().into_iter().flatten() {
            let why = format!("persistence in {} points into a temp folder", p["named_in"].as_str().unwrap_or("?"));
            items.push(json!({ "type": "persistence", "path": p["path"], "named_in": p["named_in"], "verdict": "suspicious", "why": why }));
            heuristic.push((ActionKind::RemovePersistence, json!({ "path": p["path"] }), why));
        }
        for (kind, params, why) in heuristic {
            let decision = decide(level, Severity::Suspicious, FolderClass::Temp);
            let mut entry = json!({ "kind": kind.as_str(), "params": params, "folder_class": "temp",
                "decision": format!("{decision:?}").to_lowercase() });
            if decision == Decision::NoResponse {
                no_response = true;
                remediation.push(entry);
                continue;
            }
            any_action |= self.propose(inv, kind, params, decision, &format!("suspicious: {why}"), &mut entry).await;
            remediation.push(entry);
        }
        let heuristics_found = remediation.len() > paths.len() * usize::from(verdict.is_some());
        // Across the fleet: the same file on the other devices (not from an
        // expansion itself, and only for a threat found here).
        let mut expansion = Value::Null;
        let mut expand_now = Vec::new();
        if verdict.is_some() && !paths.is_empty() && inv.subject["expanded_from"].is_null() {
            let others: Vec<Uuid> = self
                .store
                .devices(None, 1000)
                .await?
                .items
                .into_iter()
                .filter(|d| d.id != inv.device_id && d.status == crate::store::DeviceStatus::Active)
                .map(|d| d.id)
                .collect();
            if !others.is_empty() {
                let waits = others.len() >= self.config.expansion_approval_threshold;
                expansion = json!({ "devices": others, "status": if waits { "pending_approval" } else { "expanded" } });
                if !waits {
                    expand_now = others;
                }
            }
        }
        let evidence = json!({
            "automation_level": format!("{level:?}"),
            "group": group,
            "verdict": if verdict.is_none() && heuristics_found { "suspicious" } else { v },
            "items": items,
            "remediation": remediation,
            "no_response": no_response && !any_action,
            "expansion": expansion,
        });
        let status = if (verdict.is_none() || paths.is_empty()) && !heuristics_found {
            "no_threats_found"
        } else if expansion["status"] == "pending_approval" {
            "pending_approval"
        } else if any_action {
            "running"
        } else if no_response {
            "pending_approval"
        } else {
            "failed"
        };
        self.store.update_investigation(inv.id, &LIVE, status, Some(&evidence)).await?;
        let detail = format!("verdict {v} ({why}); {} remediation actions; automation {level:?}", remediation.len());
        self.store.investigation_event(inv.id, "automation", "evidence evaluated", &detail).await?;
        if !expand_now.is_empty() {
            if let Some(fresh) = self.store.investigation(inv.id).await? {
                self.expand(&fresh, &expand_now, v, "automation").await?;
            }
        }
        if let Some(alert) = inv.alert_id.as_deref().and_then(|a| a.parse().ok()) {
            if verdict.is_none() && !heuristics_found {
                self.store.set_alert_status(alert, AlertStatus::Resolved, "automation", "no threats found").await?;
            }
        }
        // The next step follows the actions just created.
        if let Some(inv) = self.store.investigation(inv.id).await? {
            Box::pin(self.follow(&inv)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_table_for_every_level_verdict_and_folder() {
        use Decision::*;
        use FolderClass::*;
        let m = Severity::Malicious;
        let s = Severity::Suspicious;
        let table = [
            (Level::Full, [(m, [Automatic, Automatic, Automatic]), (s, [Pending, Pending, Pending])]),
            (Level::SemiAny, [(m, [Pending, Pending, Pending]), (s, [Pending, Pending, Pending])]),
            (Level::SemiCore, [(m, [Pending, Automatic, Automatic]), (s, [Pending, Pending, Pending])]),
            (Level::SemiNonTemp, [(m, [Pending, Automatic, Pending]), (s, [Pending, Pending, Pending])]),
            (Level::None, [(m, [NoResponse, NoResponse, NoResponse]), (s, [NoResponse, NoResponse, NoResponse])]),
        ];
        for (level, rows) in table {
            for (verdict, expected) in rows {
                for (class, want) in [Core, Temp, Other].into_iter().zip(expected) {
                    assert_eq!(decide(level, verdict, class), want, "{level:?} × {verdict:?} × {class:?}");
                }
            }
        }
    }

    #[test]
    fn folder_classes() {
        let c = InvestigationConfig::default();
        assert_eq!(c.class_of("/usr/bin/x"), FolderClass::Core);
        assert_eq!(c.class_of("/etc/cron.d/job"), FolderClass::Core);
        assert_eq!(c.class_of("/tmp/x"), FolderClass::Temp);
        assert_eq!(c.class_of("/home/ann/Downloads/setup.sh"), FolderClass::Temp);
        assert_eq!(c.class_of("/run/user/1000/x"), FolderClass::Temp);
        assert_eq!(c.class_of("/opt/app/bin/x"), FolderClass::Other);
        assert_eq!(c.class_of("/usr"), FolderClass::Other, "the folder itself is not inside it");
        assert_eq!(c.class_of("/usrlocal/x"), FolderClass::Other);
    }
}
