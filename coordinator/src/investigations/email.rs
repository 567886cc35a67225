//! Email investigations: an alert from a mail host's `mail_scan` (path
//! `mail:<user>/<folder>/<GUID>/<file>` for an attachment,
//! `mail:<user>/<folder>/<GUID> <url>` for a blocked link) is investigated
//! on that host.
//!
//! 1. The evidence is the cluster: a `mail_search` on the host for every
//!    message carrying the same attachment (by SHA-256) or link, with their
//!    senders, subjects, folders and links.
//! 2. Verdicts per entity: the attachment (the coordinator's own
//!    indicators and rule severities, as for files — never the host's
//!    word) or the link (the coordinator's own blocklist), each message of
//!    the cluster (the subject's verdict), each sender (internal or
//!    external by the host's declared domains), each link (the host's URL
//!    blocklist; outside links in a threat's messages get a block proposed).
//! 3. The proposal: `quarantine_email` of the whole cluster on the host.
//!    DESIGN.md: email evidence with a malicious verdict is always pending
//!    approval; level `none` proposes nothing.
//! 4. The same SHA-256 investigated on a device (a file) and in mail links
//!    the two: each gets an event naming the other, and the email
//!    investigation lists them.
//!
//! The host's report acts only on the host itself: the cluster action goes
//! to the device that raised the alert.

use picket_common::actions::mail::MailSearchOutput;
use picket_common::actions::ActionKind;
use serde_json::{json, Value};

use super::{evaluated_status, verdict_name, Decision, Investigations, Level, AUTOMATION, LIVE};
use crate::actions::{ActionError, Request};
use crate::store::{ActionSource, Investigation};

/// Most messages the evidence search (and the cluster action) covers.
const CLUSTER_LIMIT: u32 = 10_000;

/// Most links of one investigation proposed for blocking.
const MAX_URL_PROPOSALS: usize = 10;

/// Whether a link's host is one of `domains` or under one.
fn link_is_internal(url: &str, domains: &[String]) -> bool {
    let host = picket_common::links::host(url);
    domains.iter().any(|d| host == *d || host.ends_with(&format!(".{d}")))
}

/// The search that finds an investigation's cluster: the messages with the
/// attachment (by SHA-256), or with the link — by its domain when the link
/// is longer than a search takes (then the cluster is wider, and a person
/// approves its quarantine anyway).
fn cluster_of(subject: &Value) -> Option<Value> {
    if let Some(url) = subject["url"].as_str() {
        return Some(if url.chars().count() <= picket_common::actions::mail::MAX_NAME {
            json!({ "url": url })
        } else {
            json!({ "url": picket_common::links::host(url) })
        });
    }
    subject["sha256"].as_str().map(|sha| json!({ "attachment_sha256": sha }))
}

/// Whether an alert path is a message's attachment or link.
pub fn is_mail_path(path: &str) -> bool {
    path.starts_with("mail:")
}

impl Investigations {
    /// Ask the host for the cluster: every message with the attachment (or
    /// the link).
    pub(super) async fn start_email(&self, inv: &Investigation) -> Result<(), ActionError> {
        self.link_same_sha256(inv).await?;
        let Some(cluster) = cluster_of(&inv.subject) else {
            return Err(ActionError::Invalid("an email investigation needs the attachment's SHA-256 or a link".into()));
        };
        let mut params = cluster;
        params["limit"] = json!(CLUSTER_LIMIT);
        let id = inv.id.to_string();
        let what = if inv.subject["url"].is_string() { "link" } else { "attachment" };
        let comment = format!("evidence for an email investigation: the messages with this {what}");
        let request = Request {
            device: inv.device_id,
            kind: ActionKind::MailSearch,
            params,
            comment: &comment,
            source: ActionSource::AutomatedDeviceAction,
            investigation_id: Some(&id),
            needs_approval: false,
            undoes: None,
        };
        if let Err(e) = self.center.create(&AUTOMATION, request).await {
            self.store.update_investigation(inv.id, &[], "failed", None).await?;
            let why = format!("cannot ask the mail host for the cluster: {e}");
            self.store.investigation_event(inv.id, "automation", "failed", &why).await?;
            self.settle_alert(inv).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Verdicts on the cluster the host found, and the cluster's quarantine.
    pub(super) async fn evaluate_email(
        &self,
        inv: &Investigation,
        found: &MailSearchOutput,
    ) -> Result<(), ActionError> {
        let sha = inv.subject["sha256"].as_str().map(str::to_string);
        let link = inv.subject["url"].as_str();
        let blocklist = crate::click::Blocklist::new(self.store.url_blocks().await?);
        let now = crate::clock::now_ms();
        // The coordinator's own verdict: its indicators and rules for an
        // attachment, its own blocklist (as of now) for a link — never the
        // host's word.
        let (verdict, why) = match link {
            Some(url) => match blocklist.check(inv.device_id, url, now) {
                Some(b) => (
                    Some(picket_common::detection::Severity::Malicious),
                    format!("blocked ({} {}, by action {})", b.match_type.as_str(), b.value, b.id),
                ),
                None => (None, "no longer on the host's URL blocklist".to_string()),
            },
            None => self.verdict(&inv.subject, sha.as_deref()).await?,
        };
        let (group, level) = self.level_of(inv.device_id).await?;
        let v = verdict_name(verdict);
        let domains = self.store.device(inv.device_id).await?.and_then(|d| d.mail_domains).unwrap_or_default();
        let what = if link.is_some() { "link" } else { "attachment" };
        let mut items = Vec::new();
        match link {
            Some(url) => items.push(json!({ "type": "url", "url": url, "verdict": v, "why": why, "subject": true })),
            None => {
                let names: std::collections::BTreeSet<&str> = found
                    .messages
                    .iter()
                    .flat_map(|m| m.attachments.iter())
                    .filter(|a| Some(&a.sha256) == sha.as_ref())
                    .map(|a| a.name.as_str())
                    .collect();
                items.push(json!({ "type": "attachment", "sha256": sha, "names": names, "verdict": v, "why": why }));
            }
        }
        let mailboxes: std::collections::BTreeSet<&str> = found.messages.iter().map(|m| m.user.as_str()).collect();
        for m in found.messages.iter().take(200) {
            items.push(json!({ "type": "message", "user": m.user, "mailbox": m.mailbox, "guid": m.guid,
                "message_id": m.message.message_id, "from": m.message.from, "subject": m.message.subject, "verdict": v,
                "why": format!("carries the {what}") }));
        }
        let senders: std::collections::BTreeSet<&str> =
            found.messages.iter().map(|m| m.message.from.as_str()).collect();
        for from in senders.iter().take(50) {
            let external = !sender_is_internal(from, &domains);
            let why = if external {
                format!("sent the {what} from outside the host's domains")
            } else {
                format!("an internal sender sent the {what}")
            };
            items.push(json!({ "type": "sender", "from": from, "external": external, "verdict": v, "why": why }));
        }
        // Links: against this host's URL blocklist; in messages that carry
        // a threat, the outside ones are the threat's too — each gets a
        // block proposed (below).
        let links: std::collections::BTreeSet<&str> = found
            .messages
            .iter()
            .flat_map(|m| m.urls.iter())
            .map(String::as_str)
            .filter(|u| Some(*u) != link)
            .collect();
        let mut to_block = Vec::new();
        for url in links.iter().take(50) {
            let internal = link_is_internal(url, &domains);
            let (uv, why) = match blocklist.check(inv.device_id, url, now) {
                Some(b) => (
                    "malicious",
                    format!("blocked at time of click ({} {}, by action {})", b.match_type.as_str(), b.value, b.id),
                ),
                None if verdict.is_some() && !internal => {
                    to_block.push(*url);
                    (v, "in the messages that carry the attachment, outside the host's domains".to_string())
                }
                None if internal => ("no_threats_found", "on the host's own domains".to_string()),
                None => ("no_threats_found", "not on the blocklist".to_string()),
            };
            // Who already clicked it (the click log, as of this evaluation).
            let clicks = self.store.clicks(Some(url), None, 1000).await?;
            let clicked_by: std::collections::BTreeSet<&str> = clicks.iter().map(|c| c.recipient.as_str()).collect();
            items.push(json!({ "type": "url", "url": url, "verdict": uv, "why": why,
                "clicks": clicks.len(), "clicked_by": clicked_by }));
        }
        let related = self.related(inv).await?;
        let mut remediation = Vec::new();
        let (mut any_action, mut no_response) = (false, false);
        if let (Some(verdict), Some(cluster)) = (verdict, cluster_of(&inv.subject)) {
            if !found.messages.is_empty() {
                let decision = if level == Level::None { Decision::NoResponse } else { Decision::Pending };
                let mut entry = json!({ "kind": "quarantine_email", "cluster": cluster,
                    "messages": found.messages.len(), "mailboxes": mailboxes.len(),
                    "decision": format!("{decision:?}").to_lowercase() });
                if decision == Decision::NoResponse {
                    no_response = true;
                } else {
                    let mut search = cluster.clone();
                    search["limit"] = json!(CLUSTER_LIMIT);
                    let params = json!({ "search": search });
                    let comment =
                        format!("{}: {why} (email: always approved by a person)", verdict_name(Some(verdict)));
                    any_action =
                        self.propose(inv, ActionKind::QuarantineEmail, params, decision, &comment, &mut entry).await;
                }
                remediation.push(entry);
                // The threat's links, blocked at time of click for this
                // host's mail (delivered before included): always a person's
                // call, like the cluster's quarantine.
                for url in to_block.iter().take(MAX_URL_PROPOSALS) {
                    let mut entry = json!({ "kind": "block_url", "url": url,
                        "decision": format!("{decision:?}").to_lowercase() });
                    if decision != Decision::NoResponse {
                        let params = json!({ "value": url, "match_type": "exact" });
                        let comment = format!(
                            "a link in the messages carrying the {} {what} {}",
                            verdict_name(Some(verdict)),
                            link.or(sha.as_deref()).unwrap_or_default()
                        );
                        any_action |=
                            self.propose(inv, ActionKind::BlockUrl, params, decision, &comment, &mut entry).await;
                    }
                    remediation.push(entry);
                }
            }
        }
        let evidence = json!({
            "kind": "email",
            "automation_level": format!("{level:?}"),
            "group": group,
            "verdict": v,
            "items": items,
            "remediation": remediation,
            "no_response": no_response && !any_action,
            "cluster": { "messages": found.messages.len(), "mailboxes": mailboxes.len(), "truncated": found.truncated },
            "related": related,
        });
        let status = evaluated_status(verdict.is_some() && !found.messages.is_empty(), false, any_action, no_response);
        self.store.update_investigation(inv.id, &LIVE, status, Some(&evidence)).await?;
        let detail = format!(
            "verdict {v} ({why}); {} messages in {} mailboxes; automation {level:?}",
            found.messages.len(),
            mailboxes.len()
        );
        self.store.investigation_event(inv.id, "automation", "evidence evaluated", &detail).await?;
        match self.store.investigation(inv.id).await? {
            Some(inv) if LIVE.contains(&inv.status.as_str()) => Box::pin(self.follow(&inv)).await?,
            Some(inv) => self.settle_alert(&inv).await?,
            None => {}
        }
        Ok(())
    }

    /// The live email investigation of `sha256` on `device`, if any.
    pub(super) async fn live_email_investigation(
        &self,
        device: uuid::Uuid,
        sha256: &str,
    ) -> Result<Option<uuid::Uuid>, ActionError> {
        for status in LIVE {
            let live = self.store.investigations(Some(status), Some(device), 500).await?;
            if let Some(i) = live.iter().find(|i| i.subject["kind"] == "email" && i.subject["sha256"] == sha256) {
                return Ok(Some(i.id));
            }
        }
        Ok(None)
    }

    /// Investigations of the same SHA-256 of the other kind (a file on a
    /// device for an email one, and the reverse).
    async fn related(&self, inv: &Investigation) -> Result<Vec<Value>, ActionError> {
        let Some(sha) = inv.subject["sha256"].as_str() else { return Ok(Vec::new()) };
        let email = inv.subject["kind"] == "email";
        Ok(self
            .store
            .investigations(None, None, 500)
            .await?
            .into_iter()
            .filter(|o| o.id != inv.id && o.subject["sha256"] == sha && (o.subject["kind"] == "email") != email)
            .map(|o| json!({ "id": o.id, "device_id": o.device_id, "title": o.title, "status": o.status }))
            .collect())
    }

    /// Record on both sides that the same SHA-256 is investigated as a
    /// file and as an attachment.
    pub(super) async fn link_same_sha256(&self, inv: &Investigation) -> Result<(), ActionError> {
        for other in self.related(inv).await? {
            let Some(id) = other["id"].as_str().and_then(|i| i.parse().ok()) else { continue };
            let here = format!("same SHA-256 as investigation {id} ({})", other["title"].as_str().unwrap_or(""));
            self.store.investigation_event(inv.id, "automation", "linked", &here).await?;
            let there = format!("same SHA-256 as investigation {} ({})", inv.id, inv.title);
            self.store.investigation_event(id, "automation", "linked", &there).await?;
        }
        Ok(())
    }
}

/// Whether the address in a From header is in one of `domains`.
fn sender_is_internal(from: &str, domains: &[String]) -> bool {
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.trim(),
    };
    let domain = address.rsplit_once('@').map(|(_, d)| d.trim().to_ascii_lowercase()).unwrap_or_default();
    domains.iter().any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_internal_by_the_hosts_domains() {
        let domains = vec!["example.org".to_string()];
        assert!(sender_is_internal("HR <hr@example.org>", &domains));
        assert!(sender_is_internal("it@mail.Example.org", &domains));
        assert!(!sender_is_internal("Billing <billing@invoices.example>", &domains));
        assert!(!sender_is_internal("x@example.org.evil.example", &domains));
        assert!(!sender_is_internal("no address", &domains));
        assert!(is_mail_path("mail:alice/INBOX/g/x.exe") && !is_mail_path("/tmp/mail:x"));
    }
}
