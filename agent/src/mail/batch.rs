//! Moving many messages, and putting them back.
//!
//! A batch first finds where each message is — from its search's own
//! answer, or with a `fetch` by GUID per user — and writes that plan to
//! `<state dir>/mail/<id>.json` (0600, fsync) before anything moves. Then
//! the moves: per user and folder one `move` per chunk of GUIDs, followed
//! by a `fetch` that checks where each message ended up; 50 users' commands
//! go in one request, 4 requests at once, and the record is rewritten after
//! each request. A re-run of the same batch (the agent restarted) reads the
//! plan instead of making a new one, and a move only matches messages still
//! in their old folder: nothing moves twice, and what was moved before the
//! restart is still known, so its undo still works.
//!
//! Moving keeps a message's GUID, flags and internal date (Dovecot copies
//! them with it); the record also keeps the flags seen before the move.

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

/// Users whose commands go in one request: doveadm answers each request
/// with a fixed cost (~20 ms here) and each command in it with ~3 ms.
const USERS_PER_REQUEST: usize = 50;

/// The `fetch` commands that find `guids` in `user`'s mailboxes.
fn locate_commands(user: &str, guids: &[&str]) -> Vec<Command> {
    guids
        .chunks(CHUNK)
        .map(|chunk| {
            Command::new(
                "fetch",
                json!({ "user": user, "field": ["guid", "mailbox", "flags"], "query": any_guid(chunk) }),
            )
        })
        .collect()
}

/// Read `fetch` answers into GUID → places.
fn places(answers: impl Iterator<Item = Result<Value, DoveadmError>>) -> Result<HashMap<String, Places>, DoveadmError> {
    let mut found: HashMap<String, Places> = HashMap::new();
    for answer in answers {
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

/// `wanted` (message → destination) by user, each message once.
fn by_user(wanted: &[(MailRef, String)]) -> BTreeMap<&str, Vec<&(MailRef, String)>> {
    let mut users: BTreeMap<&str, Vec<&(MailRef, String)>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for w in wanted {
        if seen.insert((&w.0.user, &w.0.guid)) {
            users.entry(w.0.user.as_str()).or_default().push(w);
        }
    }
    users
}

/// Make the plan of `wanted`: where each message is now, found with one
/// request per [`USERS_PER_REQUEST`] users.
fn plan(dv: &Doveadm, wanted: &[(MailRef, String)], rule: Elsewhere) -> Vec<Planned> {
    let users: Vec<_> = by_user(wanted).into_iter().collect();
    let chunks: Vec<_> = users.chunks(USERS_PER_REQUEST).collect();
    let work = |n: usize| {
        let chunk = chunks[n];
        let mut commands = Vec::new();
        let mut spans = Vec::new();
        for (user, ws) in chunk {
            let guids: Vec<&str> = ws.iter().map(|w| w.0.guid.as_str()).collect();
            let mine = locate_commands(user, &guids);
            spans.push(commands.len()..commands.len() + mine.len());
            commands.extend(mine);
        }
        let answers = dv.run(&commands);
        let mut items = Vec::new();
        for (i, (user, ws)) in chunk.iter().enumerate() {
            let at = match &answers {
                Ok(all) => places(all[spans[i].clone()].iter().cloned()),
                Err(e) => Err(e.clone()),
            };
            match at {
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
    };
    let mut planned: Vec<Vec<Planned>> = vec![Vec::new(); chunks.len()];
    in_parallel(chunks.len(), work, |n, items| planned[n] = items);
    planned.into_iter().flatten().collect()
}

/// The plan of moving what a search found (it says where each message is).
fn plan_found(found: Vec<picket_common::actions::mail::FoundMessage>, to: &str) -> Vec<Planned> {
    let mut at: HashMap<(String, String), Places> = HashMap::new();
    let mut wanted = Vec::new();
    for m in found {
        at.entry((m.user.clone(), m.guid.clone())).or_default().push((m.mailbox.clone(), m.flags));
        wanted.push((MailRef { user: m.user, mailbox: m.mailbox, guid: m.guid }, to.to_string()));
    }
    let mut items = Vec::with_capacity(wanted.len());
    for (user, ws) in by_user(&wanted) {
        for (r, to) in ws {
            let places = at.get(&(r.user.clone(), r.guid.clone()));
            items.push(plan_one(user, r, to, places, Elsewhere::Follow));
        }
    }
    items
}

/// One user's pending moves: (from, to) → (index into the record's items, GUID).
type Moves = BTreeMap<(String, String), Vec<(usize, String)>>;

/// An item's outcome, to be written into the record.
type Update = (usize, ItemOutcome, Option<String>);

/// Requests in flight at once (doveadm serves each connection in its own
/// process, so this is how many cores a batch may keep busy).
const WORKERS: usize = 4;

/// Run `work(0..n)` on [`WORKERS`] threads; `done` gets each result, on
/// the calling thread, as it comes.
fn in_parallel<T: Send>(n: usize, work: impl Fn(usize) -> T + Sync, mut done: impl FnMut(usize, T)) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(n) {
            let (tx, next, work) = (tx.clone(), &next, &work);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n || tx.send((i, work(i))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            done(i, result);
        }
    });
}

/// Move the pending messages of several users in one request — per user
/// its moves (first creating each destination not known to exist, or
/// every one when `create`), then a `fetch` that shows where each message
/// ended up. Returns each message's outcome, and the users whose
/// destination folder turned out not to exist.
fn move_users(dv: &Doveadm, users: &[(String, Moves)], create: bool) -> (Vec<Update>, Vec<usize>) {
    let mut commands = Vec::new();
    // Per user: the range of its move commands and the range of its check.
    let mut spans = Vec::new();
    let mut created = Vec::with_capacity(users.len());
    for (user, moves) in users {
        let destinations: std::collections::BTreeSet<&String> = moves.keys().map(|(_, to)| to).collect();
        let mut creates = false;
        for to in destinations {
            if create || !dv.has_folder(user, to) {
                commands.push(Command::new("mailboxCreate", json!({ "user": user, "mailbox": [to] })));
                creates = true;
            }
        }
        created.push(creates);
        let first = commands.len();
        for ((from, to), msgs) in moves {
            let guids: Vec<&str> = msgs.iter().map(|(_, g)| g.as_str()).collect();
            for chunk in guids.chunks(CHUNK) {
                let mut query = vec!["mailbox".to_string(), from.clone()];
                query.extend(any_guid(chunk));
                commands.push(Command::new("move", json!({ "user": user, "destinationMailbox": to, "query": query })));
            }
        }
        let moved = first..commands.len();
        let guids: Vec<&str> = moves.values().flatten().map(|(_, g)| g.as_str()).collect();
        commands.extend(locate_commands(user, &guids));
        spans.push((moved.clone(), moved.end..commands.len()));
    }
    let answers = dv.run(&commands);
    let (mut updates, mut missing_folder) = (Vec::new(), Vec::new());
    for (u, (moved, check)) in spans.into_iter().enumerate() {
        let moves = &users[u].1;
        let mut fail = |why: String| {
            for ((_, _), msgs) in moves {
                updates.extend(msgs.iter().map(|(i, _)| (*i, ItemOutcome::Failed, Some(why.clone()))));
            }
        };
        let all = match &answers {
            Ok(all) => all,
            Err(e) => {
                fail(e.to_string());
                continue;
            }
        };
        let move_error = all[moved].iter().find_map(|a| a.as_ref().err());
        let folder_missing = matches!(move_error, Some(DoveadmError::Command { code: 68, .. }));
        for (_, to) in moves.keys() {
            dv.set_folder(&users[u].0, to, !folder_missing);
        }
        if folder_missing && !created[u] {
            missing_folder.push(u);
            continue;
        }
        let at = match places(all[check].iter().cloned()) {
            Ok(at) => at,
            Err(e) => {
                fail(format!("could not check where the messages are: {e}"));
                continue;
            }
        };
        for ((_, to), msgs) in moves {
            for (i, guid) in msgs {
                let now = at.get(guid).map(Vec::as_slice).unwrap_or_default();
                if now.iter().any(|(m, _)| m == to) {
                    updates.push((*i, ItemOutcome::Done, None));
                    continue;
                }
                let places = now.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ");
                let why = match (move_error, places.is_empty()) {
                    (Some(e), _) => e.to_string(),
                    (None, true) => "it disappeared during the move".into(),
                    (None, false) => format!("still in {places} after the move"),
                };
                updates.push((*i, ItemOutcome::Failed, Some(why)));
            }
        }
    }
    (updates, missing_folder)
}

/// Run the plan in `record`: [`USERS_PER_REQUEST`] users per request,
/// [`WORKERS`] requests at once, the record saved after each request.
fn execute(dv: &Doveadm, dir: &Path, record: &mut Record, progress: &dyn Fn(usize, usize)) -> Result<(), String> {
    let mut users: BTreeMap<String, Moves> = BTreeMap::new();
    for (i, p) in record.items.iter().enumerate() {
        if let (None, Some(from)) = (p.outcome, &p.from) {
            let moves = users.entry(p.user.clone()).or_default();
            moves.entry((from.clone(), p.to.clone())).or_default().push((i, p.guid.clone()));
        }
    }
    let users: Vec<(String, Moves)> = users.into_iter().collect();
    let chunks: Vec<&[(String, Moves)]> = users.chunks(USERS_PER_REQUEST).collect();
    let work = |n: usize| {
        // A destination is created first where it is not known to exist;
        // one that vanished since is created on a second try.
        let (mut updates, missing) = move_users(dv, chunks[n], false);
        if !missing.is_empty() {
            let retry: Vec<(String, Moves)> = missing.into_iter().map(|u| chunks[n][u].clone()).collect();
            updates.extend(move_users(dv, &retry, true).0);
        }
        updates
    };
    let (mut done_users, mut saved) = (0, Ok(()));
    in_parallel(chunks.len(), work, |n, updates| {
        for (i, outcome, error) in updates {
            record.items[i].outcome = Some(outcome);
            record.items[i].error = error;
        }
        if saved.is_ok() {
            saved = save(dir, record);
        }
        done_users += chunks[n].len();
        progress(done_users, users.len());
    });
    saved
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
            let (items, more) = match &which.search {
                Some(query) => {
                    let found = super::search::search(dv, query).map_err(|e| format!("the batch's search: {e}"))?;
                    (plan_found(found.messages, to), found.truncated)
                }
                None => {
                    let wanted: Vec<(MailRef, String)> =
                        which.messages.iter().map(|m| (m.clone(), to.to_string())).collect();
                    (plan(dv, &wanted, Elsewhere::Follow), false)
                }
            };
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
