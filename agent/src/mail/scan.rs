//! `mail_scan`: the attachments of messages (named, or found by a search)
//! through the agent's own rules and SHA-256 indicators — the same engine
//! the file scans use, on each attachment's decoded content — and their
//! links against the host's URL blocklist (a wrapped link counts as the
//! original it leads to). Each detection is also raised as an alert (the
//! coordinator opens an email investigation of it), its path
//! `mail:<user>/<folder>/<GUID>/<file>` for an attachment,
//! `mail:<user>/<folder>/<GUID> <url>` for a link.

use picket_common::actions::mail::{AttachmentDetection, BlockedLink, MailMessages, MailScanOutput, ScannedMessage};
use serde_json::{json, Value};

use super::doveadm::{Command, Doveadm};
use crate::content::UrlBlocklist;
use crate::scan::engine::Engine;

/// Messages fetched whole in one request (and at most this many bytes,
/// when their sizes are known).
const PER_REQUEST: usize = 20;
const BYTES_PER_REQUEST: u64 = 64 * 1024 * 1024;

/// Scan what `which` names on this host; `hidden` is the quarantine
/// account, never scanned as a user's mail.
pub fn scan(
    dv: &Doveadm,
    engine: &Engine,
    blocklist: &UrlBlocklist,
    which: &MailMessages,
    hidden: &str,
    progress: &dyn Fn(usize, usize),
    found: &dyn Fn(&ScannedMessage),
) -> Result<MailScanOutput, String> {
    let mut out = MailScanOutput {
        url_blocks: blocklist.list.len() as u64,
        url_blocklist_truncated: blocklist.truncated,
        ..MailScanOutput::default()
    };
    // (user, mailbox, guid, size if known)
    let targets: Vec<(String, String, String, u64)> = match &which.search {
        Some(query) => {
            let found = super::search::search(dv, query, hidden).map_err(|e| format!("the scan's search: {e}"))?;
            out.truncated = found.truncated;
            found.messages.into_iter().map(|m| (m.user, m.mailbox, m.guid, m.message.size)).collect()
        }
        None => which
            .messages
            .iter()
            .filter(|m| m.user != hidden)
            .map(|m| (m.user.clone(), m.mailbox.clone(), m.guid.clone(), 0))
            .collect(),
    };
    let mut scanner = engine.scanner();
    let mut at = 0;
    while at < targets.len() {
        let mut end = at;
        let mut bytes = 0;
        while end < targets.len()
            && end - at < PER_REQUEST
            && (end == at || bytes + targets[end].3 <= BYTES_PER_REQUEST)
        {
            bytes += targets[end].3;
            end += 1;
        }
        let chunk = &targets[at..end];
        let fields = ["text", "hdr.message-id", "hdr.from", "hdr.subject", "date.received.unixtime"];
        let commands: Vec<Command> = chunk
            .iter()
            .map(|(user, mailbox, guid, _)| {
                let query = json!(["mailbox", mailbox, "guid", guid]);
                Command::new("fetch", json!({ "user": user, "field": fields, "query": query }))
            })
            .collect();
        let answers = dv.run(&commands).map_err(|e| e.to_string())?;
        for ((user, mailbox, guid, _), answer) in chunk.iter().zip(answers) {
            let row = answer.ok().and_then(|v| v.get(0).cloned());
            let Some(text) = row.as_ref().and_then(|r| r.get("text")).and_then(Value::as_str) else {
                out.unreadable += 1;
                continue;
            };
            let mut detections = Vec::new();
            let links = super::mime::each_attachment(text.as_bytes(), |name, data| {
                out.attachments += 1;
                let path = std::path::Path::new(name);
                match engine.scan_data(&mut scanner, path, data, "mail") {
                    Ok(found) => detections.extend(found.into_iter().map(|d| AttachmentDetection {
                        attachment: name.to_string(),
                        sha256: d.sha256,
                        size: d.size,
                        rule: d.rule,
                        namespace: d.namespace,
                        severity: d.severity,
                    })),
                    Err(e) => tracing::warn!(%user, %guid, attachment = name, error = %e, "attachment not scanned"),
                }
            });
            let Ok(links) = links else {
                out.unreadable += 1;
                continue;
            };
            out.scanned += 1;
            out.links += links.len() as u64;
            let now = crate::clock::now_ms();
            let blocked_links: Vec<BlockedLink> = links
                .into_iter()
                .filter_map(|url| {
                    let block = blocklist.list.check(&url, now)?;
                    Some(BlockedLink {
                        block_id: block.id,
                        match_type: block.match_type,
                        value: block.value.clone(),
                        url,
                    })
                })
                .collect();
            if !detections.is_empty() || !blocked_links.is_empty() {
                let meta = row.as_ref().map(super::search::meta).unwrap_or_default();
                let hit = ScannedMessage {
                    user: user.clone(),
                    mailbox: mailbox.clone(),
                    guid: guid.clone(),
                    message_id: meta.message_id,
                    from: meta.from,
                    subject: meta.subject,
                    received: meta.received,
                    detections,
                    blocked_links,
                };
                found(&hit);
                out.messages.push(hit);
            }
        }
        at = end;
        progress(at, targets.len());
    }
    Ok(out)
}

/// The alert path of attachment `name` of a message.
pub fn alert_path(m: &ScannedMessage, name: &str) -> String {
    format!("mail:{}/{}/{}/{}", m.user, m.mailbox, m.guid, name)
}
