//! `quarantine_attachment`: for each message, the user's copy is rebuilt
//! without the chosen attachments (a short note in their place, every
//! other byte as it was) and saved in the same folder with the same
//! flags; then the original moves to the quarantine account like any
//! quarantined message, so its release brings back the original bytes and
//! takes the rebuilt copy away.
//!
//! The rebuilt copy carries one added header, `X-Picket-Quarantine: <batch>
//! <original GUID>`: a re-run of the batch finds the copy it already saved
//! instead of saving another, and the user can see why the message changed.

use picket_common::actions::mail::{AttachmentInfo, ItemOutcome, MailBatchOutput, MailRef, QuarantineAttachment};
use serde_json::{json, Value};
use uuid::Uuid;

use super::batch::{self, Batches, Elsewhere, Planned, Record, Route};
use super::doveadm::{Command, Doveadm};
use super::mime;

/// The header that marks a rebuilt copy.
const MARK: &str = "X-Picket-Quarantine";

impl Batches<'_> {
    /// Take the attachments `p` chooses out of each message it names (batch
    /// `id`).
    pub fn quarantine_attachments(
        &self,
        id: Uuid,
        p: &QuarantineAttachment,
        progress: &dyn Fn(usize, usize),
    ) -> Result<MailBatchOutput, String> {
        let route = Route::into_quarantine(self.quarantine);
        let mut record = match batch::load(self.dir, id)? {
            Some(r) => r,
            None => {
                let wanted: Vec<(MailRef, String)> = p
                    .messages
                    .iter()
                    .filter(|m| m.user != self.quarantine)
                    .map(|m| (m.clone(), m.user.clone()))
                    .collect();
                let items = batch::plan(self.dv, &wanted, Elsewhere::Follow, &route);
                let r = Record { id, kind: "quarantine_attachment".into(), items, undo_of: None, more: false, route };
                batch::save(self.dir, &r)?;
                r
            }
        };
        let pending: Vec<usize> = (0..record.items.len())
            .filter(|&i| record.items[i].outcome.is_none() && record.items[i].replacement.is_none())
            .collect();
        for (n, i) in pending.iter().enumerate() {
            let item = &mut record.items[*i];
            if let Err((outcome, why)) = self.rebuild(id, item, p) {
                item.outcome = Some(outcome);
                item.error = Some(why);
            }
            batch::save(self.dir, &record)?;
            progress(n + 1, pending.len() * 2);
        }
        // The originals of the rebuilt messages go to quarantine.
        batch::execute(self.dv, self.dir, &mut record, progress)?;
        Ok(batch::output(&record))
    }

    /// Save `item`'s message without the chosen attachments next to it (or
    /// find the copy an earlier run saved); sets its replacement.
    fn rebuild(&self, id: Uuid, item: &mut Planned, p: &QuarantineAttachment) -> Result<(), (ItemOutcome, String)> {
        let failed = |why: String| (ItemOutcome::Failed, why);
        let folder = item.from.clone().ok_or((ItemOutcome::NotFound, "not found".to_string()))?;
        let mark = format!("{id} {}", item.guid);
        if let Some(copy) = self.find_copy(&item.user, &folder, &mark).map_err(failed)? {
            item.replacement = Some(copy);
            return Ok(());
        }
        let query = json!(["mailbox", folder, "guid", item.guid]);
        let found = self
            .dv
            .one("fetch", json!({ "user": item.user, "field": ["guid", "text"], "query": query }))
            .map_err(|e| failed(e.to_string()))?;
        let raw = found
            .as_array()
            .and_then(|rows| rows.first())
            .and_then(|row| row.get("text"))
            .and_then(Value::as_str)
            .ok_or((ItemOutcome::NotFound, format!("no longer in {folder:?}")))?;
        // A message that does not parse, or whose attachment is broken, is
        // left as it is: the operator can quarantine the whole message.
        let all =
            mime::attachments(raw.as_bytes()).map_err(|e| failed(format!("{e}; the message is left untouched")))?;
        let chosen: Vec<&mime::Attachment> = all.iter().filter(|a| chosen(a, p)).collect();
        if chosen.is_empty() {
            let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
            return Err((ItemOutcome::NotFound, format!("no attachment matches (it has: {})", names.join(", "))));
        }
        let why = p.reason.as_deref().unwrap_or("it was found harmful");
        let note = |a: &mime::Attachment| {
            // The name is the sender's text: one line, whatever it holds.
            let name: String = a.name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            format!(
                "The attachment \"{}\" ({} bytes, SHA-256 {}) was removed from this message and quarantined \
                 by your security team.\nReason: {why}\nIf you need it, ask them to release the message.",
                name, a.size, a.sha256
            )
        };
        let mut rebuilt = format!("{MARK}: {mark}\n").into_bytes();
        rebuilt.extend(mime::without(raw.as_bytes(), &chosen, note));
        let rebuilt = String::from_utf8(rebuilt).map_err(|_| failed("the rebuilt message is not text".into()))?;
        let save = Command::new("save", json!({ "user": item.user, "mailbox": folder, "file": rebuilt }));
        let saved = self.dv.run(&[save]).map_err(|e| failed(e.to_string()))?;
        if let Some(Err(e)) = saved.into_iter().next() {
            return Err(failed(format!("could not save the copy without the attachment: {e}")));
        }
        let copy = self
            .find_copy(&item.user, &folder, &mark)
            .map_err(failed)?
            .ok_or_else(|| failed("the saved copy is not in the folder".into()))?;
        if !item.flags.is_empty() {
            let query = json!(["mailbox", folder, "guid", copy]);
            let flags = json!({ "user": item.user, "flag": item.flags, "query": query });
            self.dv.one("flagsAdd", flags).map_err(|e| failed(format!("the copy's flags: {e}")))?;
        }
        item.attachments = chosen
            .iter()
            .map(|a| AttachmentInfo { name: a.name.clone(), sha256: a.sha256.clone(), size: a.size })
            .collect();
        item.replacement = Some(copy);
        Ok(())
    }

    /// The GUID of the copy marked `mark` in `user`'s `folder`, if saved.
    fn find_copy(&self, user: &str, folder: &str, mark: &str) -> Result<Option<String>, String> {
        let query = json!(["mailbox", folder, "header", MARK, mark]);
        let found = self.dv.one("fetch", json!({ "user": user, "field": ["guid"], "query": query }));
        let rows = found.map_err(|e| e.to_string())?;
        Ok(rows
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r.get("guid"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

/// Whether `a` is one `p` asks for (every attachment when it names none).
fn chosen(a: &mime::Attachment, p: &QuarantineAttachment) -> bool {
    if p.names.is_empty() && p.sha256.is_empty() {
        return true;
    }
    p.names.iter().any(|n| n.eq_ignore_ascii_case(&a.name)) || p.sha256.contains(&a.sha256)
}

/// After a release: expunge, wherever the user put it, each rebuilt copy
/// whose original is back. Best effort: a copy left behind is reported in
/// the log, never a reason to undo the release.
pub(super) fn remove_copies(dv: &Doveadm, record: &Record) {
    for p in record.items.iter().filter(|p| p.outcome == Some(ItemOutcome::Done)) {
        let Some(copy) = &p.replacement else { continue };
        let located = dv.run(&batch::locate_commands(&p.user, &[copy.as_str()], false));
        let places = match located.map(|answers| batch::places(answers.into_iter())) {
            Ok(Ok(places)) => places,
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(user = %p.user, %copy, error = %e, "could not find the copy without the attachment");
                continue;
            }
        };
        for place in places.get(copy).into_iter().flatten() {
            let query = json!(["mailbox", place.mailbox, "guid", copy]);
            if let Err(e) = dv.one("expunge", json!({ "user": p.user, "query": query })) {
                tracing::warn!(user = %p.user, %copy, error = %e, "could not remove the copy without the attachment");
            }
        }
    }
}
