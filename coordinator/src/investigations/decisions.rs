//! What people decide about investigations: approving an expansion to
//! other devices, terminating, classifying an alert.

use super::*;

impl Investigations {
    /// Open the investigations an approved expansion asks for: the same
    /// SHA-256 looked for on each device.
    async fn expand(&self, parent: &Investigation, devices: &[Uuid], actor: &str) -> Result<(), ActionError> {
        let sha256 = parent.subject["sha256"].as_str().or(parent.evidence["items"][0]["sha256"].as_str());
        for device in devices {
            let subject = json!({
                "path": parent.subject["path"],
                "sha256": sha256,
                "size": parent.subject["size"],
                "rule": parent.subject["rule"],
                "namespace": parent.subject["namespace"],
                "reported_severity": parent.subject["reported_severity"],
                "expanded_from": parent.id,
            });
            let title = format!("expansion of {}: SHA-256 {}", parent.id, sha256.unwrap_or("?"));
            if let Err(error) = self.start(*device, None, title, subject, actor).await {
                tracing::warn!(%error, %device, "could not expand an investigation");
            }
        }
        self.store.investigation_event(parent.id, actor, "expanded", &format!("to {} devices", devices.len())).await?;
        Ok(())
    }

    /// Approve a pending expansion (approver): one device's report acts on
    /// the others only this way.
    pub async fn approve_expansion(&self, id: Uuid, who: &Requestor<'_>) -> Result<Investigation, ActionError> {
        if who.role < Role::Approver {
            return Err(ActionError::Forbidden("expanding to other devices needs the approver role".into()));
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
        self.expand(&inv, &devices, who.name).await?;
        let inv = self.store.investigation(id).await?.unwrap_or(inv);
        Box::pin(self.follow(&inv)).await?;
        Ok(self.store.investigation(id).await?.unwrap_or(inv))
    }

    /// Cancel what has not run and end the investigation.
    pub async fn terminate(&self, id: Uuid, who: &Requestor<'_>, comment: &str) -> Result<Investigation, ActionError> {
        if who.role < Role::Responder {
            return Err(ActionError::Forbidden("terminating an investigation needs the responder role".into()));
        }
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
        self.settle_alert(&inv).await?;
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
        if who.role < Role::Responder {
            return Err(ActionError::Forbidden("classifying an alert needs the responder role".into()));
        }
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
                    let undoable = a.kind.undo().is_some();
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
        Ok(json!({ "alert_id": alert_id, "classification": classification, "undone": undone, "indicator": indicator,
            "suppressed": classification == "false_positive" }))
    }
}
