//! Verdicts on what an investigation's evidence found, and the
//! remediation each one proposes under the group's automation level.

use picket_common::actions::results::EvidenceOutput;
use picket_common::actions::{params, ActionKind};
use picket_common::detection::Severity;
use serde_json::{json, Value};

use uuid::Uuid;

use super::{decide, evaluated_status, verdict_name, Decision, FolderClass, Investigations, LIVE};
use crate::actions::ActionError;
use crate::store::Investigation;

impl Investigations {
    /// Give verdicts and decide the remediation of what the evidence found.
    pub(super) async fn evaluate(&self, inv: &Investigation, result: &EvidenceOutput) -> Result<(), ActionError> {
        let file = &result.file;
        let subject_sha = inv.subject["sha256"].as_str();
        let sha = subject_sha.or(file.sha256.as_deref()).map(str::to_string);
        let (verdict, why) = self.verdict(&inv.subject, sha.as_deref()).await?;
        let (group, level) = self.level_of(inv.device_id).await?;
        let actions = self.store.investigation_actions(inv.id).await?;
        // Paths a quarantine of this investigation already covers (the file
        // first), with how it was decided.
        let first: Vec<(String, &crate::store::Action)> = actions
            .iter()
            .filter(|a| a.kind == ActionKind::StopAndQuarantine)
            .filter_map(|a| {
                let path = params::parse::<params::Quarantine>(a.kind, &a.params).ok()?.path?;
                Some((path.to_string_lossy().into_owned(), a))
            })
            .collect();
        let covered: Vec<String> = first.iter().map(|(p, _)| p.clone()).collect();
        let v = verdict_name(verdict);
        let mut items =
            vec![json!({ "type": "file", "path": file.path, "sha256": file.sha256, "verdict": v, "why": why })];
        let mut paths: Vec<String> = Vec::new();
        let here = file.path.to_string_lossy().into_owned();
        let same_content = file.sha256.is_some() && file.sha256 == sha;
        if file.exists && !covered.contains(&here) {
            if same_content {
                paths.push(here.clone());
            } else {
                items.push(json!({ "type": "note", "path": here, "verdict": "no_threats_found",
                    "why": "the file at this path has another SHA-256: it is not the one investigated and is left alone" }));
            }
        }
        for c in result.copies.iter().map(|c| c.to_string_lossy()) {
            items.push(json!({ "type": "copy", "path": c, "sha256": sha, "verdict": v }));
            if !covered.iter().any(|p| *p == c) && !paths.iter().any(|p| *p == c) {
                paths.push(c.into_owned());
            }
        }
        for p in &result.processes {
            items.push(
                json!({ "type": "process", "pid": p.pid, "executable": p.executable, "parent": p.parent_executable,
                "connections": p.connections, "verdict": v, "remediation": "killed by the file's quarantine" }),
            );
        }
        for p in &result.persistence {
            items.push(json!({ "type": "persistence", "what": p.what, "verdict": v, "remediation": "removed by the file's quarantine" }));
        }
        let mut remediation: Vec<Value> = first
            .iter()
            .map(|(p, a)| {
                let class = self.config.class_of(p);
                let decision = verdict.map(|v| decide(level, v, class));
                json!({ "kind": "stop_and_quarantine", "path": p, "action_id": a.id,
                    "folder_class": format!("{class:?}").to_lowercase(),
                    "decision": decision.map(|d| format!("{d:?}").to_lowercase()), "first": true })
            })
            .collect();
        let mut any_action = !covered.is_empty();
        let mut no_response = false;
        if let (Some(verdict), Some(sha)) = (verdict, &sha) {
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
                // The agent refuses if the file no longer has this hash.
                let params = json!({ "path": path, "expected_sha256": sha });
                any_action |= self
                    .propose(inv, ActionKind::StopAndQuarantine, params, decision, &format!("{v}: {why}"), &mut entry)
                    .await;
                remediation.push(entry);
            }
        }
        let threat_count = remediation.len();
        // Heuristics (suspicious): a non-package executable running from a
        // temp folder with network sockets → kill_process; persistence that
        // points into a temp folder → remove_persistence.
        let mut heuristic: Vec<(ActionKind, Value, String)> = Vec::new();
        for p in &result.temp_processes {
            let why = "a non-package executable in a temp folder with network connections".to_string();
            items.push(json!({ "type": "process", "pid": p.pid, "executable": p.executable, "sha256": p.sha256,
                "connections": p.connections, "verdict": "suspicious", "why": why }));
            let kill = params::KillProcess { pid: Some(p.pid), sha256: p.sha256.clone(), grace_secs: 0 };
            heuristic.push((ActionKind::KillProcess, json!(kill), why));
        }
        for p in &result.temp_persistence {
            let why = format!("persistence in {} points into a temp folder", p.named_in);
            items.push(json!({ "type": "persistence", "path": p.path, "named_in": p.named_in, "verdict": "suspicious", "why": why }));
            heuristic.push((
                ActionKind::RemovePersistence,
                json!(params::RemovePersistence { path: p.path.clone().into() }),
                why,
            ));
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
        let heuristics_found = remediation.len() > threat_count;
        let threat_here = verdict.is_some() && (!paths.is_empty() || !covered.is_empty());
        // Across the fleet: the same SHA-256 on the other devices, proposed
        // for an approver (never from an expansion itself).
        let mut expansion = Value::Null;
        if threat_here && inv.subject["expanded_from"].is_null() {
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
                expansion = json!({ "devices": others, "sha256": sha, "status": "pending_approval" });
            }
        }
        let copies_search = &result.copies_search;
        let evidence = json!({
            "automation_level": format!("{level:?}"),
            "group": group,
            "verdict": if verdict.is_none() && heuristics_found { "suspicious" } else { v },
            "items": items,
            "remediation": remediation,
            "no_response": no_response && !any_action,
            "expansion": expansion,
            "copies_search": copies_search,
        });
        let waits = expansion["status"] == "pending_approval";
        let status = evaluated_status(threat_here || heuristics_found, waits, any_action, no_response);
        self.store.update_investigation(inv.id, &LIVE, status, Some(&evidence)).await?;
        let detail = format!("verdict {v} ({why}); {} remediation actions; automation {level:?}", remediation.len());
        self.store.investigation_event(inv.id, "automation", "evidence evaluated", &detail).await?;
        if let Some(search) = copies_search.as_ref().filter(|s| !s.complete) {
            let why = search.stopped.as_deref().unwrap_or("stopped early");
            self.store.investigation_event(inv.id, "automation", "copies search incomplete", why).await?;
        }
        // The next step follows the actions just created.
        match self.store.investigation(inv.id).await? {
            Some(inv) if LIVE.contains(&inv.status.as_str()) => Box::pin(self.follow(&inv)).await?,
            Some(inv) => self.settle_alert(&inv).await?,
            None => {}
        }
        Ok(())
    }
}
