//! Moving many messages, and putting them back.
//!
//! A batch first finds where each message is (one `fetch` by GUID per
//! user) and writes that plan to `<state dir>/mail/<id>.json` (0600, fsync)
//! before anything moves. Then, per user and folder, one `move` per chunk
//! of GUIDs, and a `fetch` that checks where each message ended up; the
//! record is rewritten after each user. A re-run of the same batch (the
//! agent restarted) reads the plan instead of making a new one, and a move
//! only matches messages still in their old folder: nothing moves twice,
//! and what was moved before the restart is still known, so its undo
//! still works.
//!
//! Moving keeps a message's GUID, flags and internal date (Dovecot copies
//! them with it); the record also keeps the flags seen before, and the
//! restore reports the flags found after.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use picket_common::actions::mail::{BatchCounts, ItemOutcome, MailBatchOutput, MailItem, MailMessages, MailRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::doveadm::{Command, Doveadm, DoveadmError};

/// GUIDs per `move` query.
const CHUNK: usize = 200;

/// What a batch was asked and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: Uuid,
    /// The action kind that made it.
    pub kind: String,
    pub items: Vec<Planned>,
    /// Set on a restore: the record it puts back.
    #[serde(default)]
    pub undo_of: Option<String>,
    /// The batch's search found more than its limit.
    #[serde(default)]
    pub more: bool,
}

/// One message of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    pub user: String,
    pub guid: String,
    /// Where it was (None: not found).
    pub from: Option<String>,
    pub to: String,
    pub flags: Vec<String>,
    /// None: still to move.
    pub outcome: Option<ItemOutcome>,
    #[serde(default)]
    pub error: Option<String>,
}

fn path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn load(dir: &Path, id: Uuid) -> Result<Option<Record>, String> {
    match std::fs::read(path(dir, id)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("batch record {id}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("batch record {id}: {e}")),
    }
}

fn save(dir: &Path, record: &Record) -> Result<(), String> {
    let json = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&path(dir, record.id), &json).map_err(|e| format!("batch record {}: {e}", record.id))
}

/// The mailboxes holding one message (a user may keep copies), with its
/// flags in each.
type Places = Vec<(String, Vec<String>)>;

/// Where each of `guids` is in `user`'s mailboxes.
fn locate(dv: &Doveadm, user: &str, guids: &[&str]) -> Result<HashMap<String, Places>, DoveadmError> {
    let mut found: HashMap<String, Places> = HashMap::new();
    let commands: Vec<Command> = guids
        .chunks(CHUNK)
        .map(|chunk| {
            Command::new(
                "fetch",
                json!({ "user": user, "field": ["guid", "mailbox", "flags"], "query": any_guid(chunk) }),
            )
        })
        .collect();
    for answer in dv.run(&commands)? {
        for row in answer?.as_array().into_iter().flatten() {
            let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            found.entry(s("guid")).or_default().push((s("mailbox"), super::flags(&s("flags"))));
        }
    }
    Ok(found)
}

/// `( guid a OR guid b … )`.
fn any_guid(guids: &[&str]) -> Vec<String> {
    let mut q = vec!["(".to_string()];
    for (i, g) in guids.iter().enumerate() {
        if i > 0 {
            q.push("OR".into());
        }
        q.push("guid".into());
        q.push(g.to_string());
    }
    q.push(")".into());
    q
}

/// How a batch treats a message found somewhere other than where it was
/// named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elsewhere {
    /// Move it from wherever it is (soft delete, junk, inbox: the operator
    /// wants it out of the user's way, wherever the user put it).
    Follow,
    /// Leave it and say so (a restore puts back only what is where the
    /// batch left it).
    Leave,
}

/// Plan one message of `user`: where it is against where it goes.
fn plan_one(user: &str, want: &MailRef, to: &str, at: Option<&Places>, rule: Elsewhere) -> Planned {
    let mut p = Planned {
        user: user.to_string(),
        guid: want.guid.clone(),
        from: None,
        to: to.to_string(),
        flags: Vec::new(),
        outcome: None,
        error: None,
    };
    let Some(at) = at.filter(|a| !a.is_empty()) else {
        p.outcome = Some(ItemOutcome::NotFound);
        return p;
    };
    let named = at.iter().find(|(m, _)| *m == want.mailbox && m != to);
    let elsewhere = at.iter().find(|(m, _)| m != to);
    match (named, at.iter().find(|(m, _)| m == to), elsewhere) {
        (Some((m, flags)), _, _) => (p.from, p.flags) = (Some(m.clone()), flags.clone()),
        (None, Some((m, flags)), _) => {
            (p.from, p.flags, p.outcome) = (Some(m.clone()), flags.clone(), Some(ItemOutcome::AlreadyThere))
        }
        (None, None, Some((m, flags))) if rule == Elsewhere::Follow => {
            (p.from, p.flags) = (Some(m.clone()), flags.clone())
        }
        (None, None, Some((m, _))) => {
            p.outcome = Some(ItemOutcome::Failed);
            p.error = Some(format!("moved since to {m:?}; left there"));
        }
        (None, None, None) => p.outcome = Some(ItemOutcome::NotFound),
    }
    p
}

/// Make the plan of `wanted` (message → destination).
fn plan(dv: &Doveadm, wanted: &[(MailRef, String)], rule: Elsewhere) -> Vec<Planned> {
    let mut by_user: BTreeMap<&str, Vec<&(MailRef, String)>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for w in wanted {
        if seen.insert((&w.0.user, &w.0.guid)) {
            by_user.entry(w.0.user.as_str()).or_default().push(w);
        }
    }
    let mut items = Vec::with_capacity(wanted.len());
    for (user, ws) in by_user {
        let guids: Vec<&str> = ws.iter().map(|w| w.0.guid.as_str()).collect();
        match locate(dv, user, &guids) {
            Ok(at) => items.extend(ws.iter().map(|(r, to)| plan_one(user, r, to, at.get(&r.guid), rule))),
            Err(e) => items.extend(ws.iter().map(|(r, to)| Planned {
                user: user.to_string(),
                guid: r.guid.clone(),
                from: None,
                to: to.clone(),
                flags: Vec::new(),
                outcome: Some(if e.is_no_user() { ItemOutcome::NotFound } else { ItemOutcome::Failed }),
                error: Some(e.to_string()),
            })),
        }
    }
    items
}

/// Move the still-pending items of one user, then check where they are.
fn move_user(dv: &Doveadm, user: &str, items: &mut [&mut Planned]) {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, p) in items.iter().enumerate() {
        if let (None, Some(from)) = (p.outcome, &p.from) {
            groups.entry((from.clone(), p.to.clone())).or_default().push(i);
        }
    }
    if groups.is_empty() {
        return;
    }
    let mut commands = Vec::new();
    for to in groups.keys().map(|(_, to)| to).collect::<std::collections::BTreeSet<_>>() {
        commands.push(Command::new("mailboxCreate", json!({ "user": user, "mailbox": [to] })));
    }
    let creates = commands.len();
    for ((from, to), idx) in &groups {
        let guids: Vec<&str> = idx.iter().map(|&i| items[i].guid.as_str()).collect();
        for chunk in guids.chunks(CHUNK) {
            let mut query = vec!["mailbox".to_string(), from.clone()];
            query.extend(any_guid(chunk));
            commands.push(Command::new("move", json!({ "user": user, "destinationMailbox": to, "query": query })));
        }
    }
    let fail_all = |items: &mut [&mut Planned], why: String| {
        for i in groups.values().flatten() {
            items[*i].outcome = Some(ItemOutcome::Failed);
            items[*i].error = Some(why.clone());
        }
    };
    let answers = match dv.run(&commands) {
        Ok(a) => a,
        Err(e) => return fail_all(items, e.to_string()),
    };
    if let Some(Err(e)) = answers[..creates].iter().find(|a| matches!(a, Err(e) if !e.is_exists())) {
        return fail_all(items, format!("cannot create the destination folder: {e}"));
    }
    let move_error = answers[creates..].iter().find_map(|a| a.as_ref().err()).map(ToString::to_string);
    // Where did each end up?
    let guids: Vec<&str> = groups.values().flatten().map(|&i| items[i].guid.as_str()).collect();
    let at = match locate(dv, user, &guids) {
        Ok(at) => at,
        Err(e) => return fail_all(items, format!("moved, but could not check where to: {e}")),
    };
    for &i in groups.values().flatten() {
        let p = &mut *items[i];
        let places = at.get(&p.guid).map(Vec::as_slice).unwrap_or_default();
        if places.iter().any(|(m, _)| *m == p.to) {
            p.outcome = Some(ItemOutcome::Done);
        } else {
            p.outcome = Some(ItemOutcome::Failed);
            let now = places.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ");
            p.error = Some(match (&move_error, now.is_empty()) {
                (Some(e), _) => e.clone(),
                (None, true) => "it disappeared during the move".into(),
                (None, false) => format!("still in {now} after the move"),
            });
        }
    }
}

/// Run the plan in `record`, saving it after each user.
fn execute(dv: &Doveadm, dir: &Path, record: &mut Record, progress: &dyn Fn(usize, usize)) -> Result<(), String> {
    let users: Vec<String> = {
        let mut u: Vec<String> = record.items.iter().filter(|p| p.outcome.is_none()).map(|p| p.user.clone()).collect();
        u.dedup();
        u.sort();
        u.dedup();
        u
    };
    for (n, user) in users.iter().enumerate() {
        let mut mine: Vec<&mut Planned> = record.items.iter_mut().filter(|p| p.user == *user).collect();
        move_user(dv, user, &mut mine);
        save(dir, record)?;
        progress(n + 1, users.len());
    }
    Ok(())
}

fn output(record: &Record) -> MailBatchOutput {
    let items: Vec<MailItem> = record
        .items
        .iter()
        .map(|p| MailItem {
            user: p.user.clone(),
            guid: p.guid.clone(),
            from: p.from.clone(),
            to: p.to.clone(),
            outcome: p.outcome.unwrap_or(ItemOutcome::Failed),
            error: p.error.clone(),
            flags: p.flags.clone(),
        })
        .collect();
    MailBatchOutput {
        record_id: record.id,
        counts: BatchCounts::of(&items),
        items,
        undo_of: record.undo_of.clone(),
        more: record.more,
    }
}

/// Move the messages `which` names to `to` (batch `id` of `kind`).
pub fn move_messages(
    dv: &Doveadm,
    dir: &Path,
    id: Uuid,
    kind: &str,
    which: &MailMessages,
    to: &str,
    progress: &dyn Fn(usize, usize),
) -> Result<MailBatchOutput, String> {
    let mut record = match load(dir, id)? {
        Some(r) => r,
        None => {
            let (messages, more) = match &which.search {
                Some(query) => {
                    let found = super::search::search(dv, query).map_err(|e| format!("the batch's search: {e}"))?;
                    let refs =
                        found.messages.into_iter().map(|m| MailRef { user: m.user, mailbox: m.mailbox, guid: m.guid });
                    (refs.collect(), found.truncated)
                }
                None => (which.messages.clone(), false),
            };
            let wanted: Vec<(MailRef, String)> = messages.into_iter().map(|m| (m, to.to_string())).collect();
            let items = plan(dv, &wanted, Elsewhere::Follow);
            let r = Record { id, kind: kind.to_string(), items, undo_of: None, more };
            save(dir, &r)?;
            r
        }
    };
    execute(dv, dir, &mut record, progress)?;
    Ok(output(&record))
}

/// Put back what batch `original` moved (as batch `id`).
pub fn restore(
    dv: &Doveadm,
    dir: &Path,
    id: Uuid,
    original: Uuid,
    undo_of: Option<String>,
    progress: &dyn Fn(usize, usize),
) -> Result<MailBatchOutput, String> {
    let mut record = match load(dir, id)? {
        Some(r) => r,
        None => {
            let done = load(dir, original)?
                .ok_or_else(|| format!("this host has no record of batch {original} (nothing to put back)"))?;
            let wanted: Vec<(MailRef, String)> = done
                .items
                .iter()
                .filter(|p| p.outcome == Some(ItemOutcome::Done))
                .filter_map(|p| {
                    let back = p.from.clone()?;
                    Some((MailRef { user: p.user.clone(), mailbox: p.to.clone(), guid: p.guid.clone() }, back))
                })
                .collect();
            let items = plan(dv, &wanted, Elsewhere::Leave);
            let r = Record { id, kind: "restore_email".into(), items, undo_of, more: false };
            save(dir, &r)?;
            r
        }
    };
    execute(dv, dir, &mut record, progress)?;
    Ok(output(&record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(places: &[&str]) -> Places {
        places.iter().map(|m| (m.to_string(), vec!["\\Seen".to_string()])).collect()
    }

    #[test]
    fn each_message_is_planned_from_where_it_is() {
        let r = MailRef { user: "alice".into(), mailbox: "INBOX".into(), guid: "g".into() };
        let follow = Elsewhere::Follow;
        let p = plan_one("alice", &r, "Junk", Some(&at(&["INBOX"])), follow);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("INBOX"), None));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Junk"])), follow);
        assert_eq!(p.outcome, Some(ItemOutcome::AlreadyThere));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Archive"])), follow);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("Archive"), None));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Archive"])), Elsewhere::Leave);
        assert_eq!(p.outcome, Some(ItemOutcome::Failed));
        assert_eq!(plan_one("alice", &r, "Junk", None, follow).outcome, Some(ItemOutcome::NotFound));
        assert_eq!(plan_one("alice", &r, "Junk", Some(&Vec::new()), follow).outcome, Some(ItemOutcome::NotFound));
    }

    #[test]
    fn guid_queries_are_one_element_per_value() {
        assert_eq!(any_guid(&["a", "b"]), vec!["(", "guid", "a", "OR", "guid", "b", ")"]);
    }
}
