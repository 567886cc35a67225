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
//!
//! A batch's [`Route`] says which accounts it moves between: quarantine
//! moves each message into the host's quarantine account (a folder per
//! user there), release moves it back; Dovecot moves the stored message
//! itself, so what comes back is byte for byte what left. A hard delete
//! expunges instead of moving, and keeps each message's headers and size
//! in its record and result.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use picket_common::actions::mail::{
    AttachmentInfo, BatchCounts, FoundMessage, ItemOutcome, MailBatchOutput, MailItem, MailMessages, MailRef,
    MessageMeta,
};
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
    #[serde(default)]
    pub route: Route,
}

/// Which accounts a batch moves between, or that it expunges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Route {
    /// The account the messages are in (None: each message's own user).
    pub from_account: Option<String>,
    /// The account they go to (None: each message's own user).
    pub to_account: Option<String>,
    /// Expunge them for good instead of moving them (`to` unused).
    pub expunge: bool,
}

impl Route {
    /// Into the quarantine account.
    pub fn into_quarantine(account: &str) -> Self {
        Self { to_account: Some(account.to_string()), ..Self::default() }
    }

    pub fn expunge() -> Self {
        Self { expunge: true, ..Self::default() }
    }

    /// Where `user`'s messages are.
    fn source<'a>(&'a self, user: &'a str) -> &'a str {
        self.from_account.as_deref().unwrap_or(user)
    }

    /// Where `user`'s messages go.
    fn destination<'a>(&'a self, user: &'a str) -> &'a str {
        self.to_account.as_deref().unwrap_or(user)
    }

    /// The way back (None: an expunge has none).
    fn reversed(&self) -> Option<Self> {
        (!self.expunge).then(|| Self {
            from_account: self.to_account.clone(),
            to_account: self.from_account.clone(),
            expunge: false,
        })
    }

    /// Whether the destination is another account (so a folder of the
    /// same name in the source account is not it).
    fn crosses(&self) -> bool {
        self.from_account != self.to_account
    }
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
    /// What the message was (kept by a hard delete).
    #[serde(default)]
    pub message: Option<MessageMeta>,
    /// The attachments taken out (attachment quarantine).
    #[serde(default)]
    pub attachments: Vec<AttachmentInfo>,
    /// The GUID of the user's copy without them (attachment quarantine):
    /// a release expunges it.
    #[serde(default)]
    pub replacement: Option<String>,
}

fn path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}.json"))
}

pub(super) fn load(dir: &Path, id: Uuid) -> Result<Option<Record>, String> {
    super::read_record(&path(dir, id), &format!("batch record {id}"))
}

pub(super) fn save(dir: &Path, record: &Record) -> Result<(), String> {
    super::write_record(&path(dir, record.id), record, &format!("batch record {}", record.id))
}

/// One mailbox holding a message, its flags there, and (when asked for)
/// what the message is.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) mailbox: String,
    pub(super) flags: Vec<String>,
    pub(super) message: Option<MessageMeta>,
}

/// The mailboxes holding one message (a user may keep copies).
pub(super) type Places = Vec<Place>;

/// The header fields a hard delete keeps.
const META_FIELDS: [&str; 6] =
    ["hdr.message-id", "hdr.from", "hdr.to", "hdr.subject", "date.received.unixtime", "size.physical"];

/// Users whose commands go in one request: doveadm answers each request
/// with a fixed cost (~20 ms here) and each command in it with ~3 ms.
const USERS_PER_REQUEST: usize = 50;

/// The `fetch` commands that find `guids` in `account`'s mailboxes (with
/// what each message is, when `meta`).
pub(super) fn locate_commands(account: &str, guids: &[&str], meta: bool) -> Vec<Command> {
    let mut fields = vec!["guid", "mailbox", "flags"];
    if meta {
        fields.extend(META_FIELDS);
    }
    guids
        .chunks(CHUNK)
        .map(|chunk| Command::new("fetch", json!({ "user": account, "field": fields, "query": any_guid(chunk) })))
        .collect()
}

/// Read `fetch` answers into GUID → places.
pub(super) fn places(
    answers: impl Iterator<Item = Result<Value, DoveadmError>>,
) -> Result<HashMap<String, Places>, DoveadmError> {
    let mut found: HashMap<String, Places> = HashMap::new();
    for answer in answers {
        for row in answer?.as_array().into_iter().flatten() {
            let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let message = row.get("hdr.message-id").is_some().then(|| super::search::meta(row));
            let place = Place { mailbox: s("mailbox"), flags: super::flags(&s("flags")), message };
            found.entry(s("guid")).or_default().push(place);
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
fn plan_one(user: &str, want: &MailRef, to: &str, at: Option<&Places>, rule: Elsewhere, route: &Route) -> Planned {
    let mut p = Planned {
        user: user.to_string(),
        guid: want.guid.clone(),
        from: None,
        to: to.to_string(),
        flags: Vec::new(),
        outcome: None,
        error: None,
        message: None,
        attachments: Vec::new(),
        replacement: None,
    };
    // The quarantine account holds every user's copies (one GUID may be
    // in several users' folders there): only this user's folder is theirs.
    let at: Vec<&Place> =
        at.into_iter().flatten().filter(|pl| route.from_account.is_none() || pl.mailbox == want.mailbox).collect();
    // Only a move within one account can see that it already arrived.
    let arrived = |pl: &&&Place| !route.expunge && !route.crosses() && pl.mailbox == to;
    let named = at.iter().find(|pl| pl.mailbox == want.mailbox && !arrived(pl));
    let there = at.iter().find(arrived);
    let elsewhere = at.iter().find(|pl| !arrived(pl));
    let mut take = |pl: &Place| {
        p.from = Some(pl.mailbox.clone());
        p.flags = pl.flags.clone();
        p.message = pl.message.clone();
    };
    match (named, there, elsewhere) {
        (Some(pl), _, _) => take(pl),
        (None, Some(pl), _) => {
            take(pl);
            p.outcome = Some(ItemOutcome::AlreadyThere);
        }
        (None, None, Some(pl)) if rule == Elsewhere::Follow => take(pl),
        (None, None, Some(pl)) => {
            p.outcome = Some(ItemOutcome::Failed);
            p.error = Some(format!("moved since to {:?}; left there", pl.mailbox));
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
pub(super) fn plan(dv: &Doveadm, wanted: &[(MailRef, String)], rule: Elsewhere, route: &Route) -> Vec<Planned> {
    let users: Vec<_> = by_user(wanted).into_iter().collect();
    let chunks: Vec<_> = users.chunks(USERS_PER_REQUEST).collect();
    let work = |n: usize| {
        let chunk = chunks[n];
        let mut commands = Vec::new();
        let mut spans = Vec::new();
        for (user, ws) in chunk {
            let guids: Vec<&str> = ws.iter().map(|w| w.0.guid.as_str()).collect();
            let mine = locate_commands(route.source(user), &guids, route.expunge);
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
                Ok(at) => items.extend(ws.iter().map(|(r, to)| plan_one(user, r, to, at.get(&r.guid), rule, route))),
                Err(e) => items.extend(ws.iter().map(|(r, to)| Planned {
                    user: user.to_string(),
                    guid: r.guid.clone(),
                    from: None,
                    to: to.clone(),
                    flags: Vec::new(),
                    outcome: Some(if e.is_no_user() { ItemOutcome::NotFound } else { ItemOutcome::Failed }),
                    error: Some(e.to_string()),
                    message: None,
                    attachments: Vec::new(),
                    replacement: None,
                })),
            }
        }
        items
    };
    let mut planned: Vec<Vec<Planned>> = vec![Vec::new(); chunks.len()];
    in_parallel(chunks.len(), work, |n, items| planned[n] = items);
    planned.into_iter().flatten().collect()
}

/// The plan of what a search found (it says where each message is).
fn plan_found(found: Vec<FoundMessage>, to: &str, route: &Route) -> Vec<Planned> {
    let mut at: HashMap<(String, String), Places> = HashMap::new();
    let mut wanted = Vec::new();
    for m in found {
        let place = Place { mailbox: m.mailbox.clone(), flags: m.flags, message: route.expunge.then_some(m.message) };
        at.entry((m.user.clone(), m.guid.clone())).or_default().push(place);
        wanted.push((MailRef { user: m.user, mailbox: m.mailbox, guid: m.guid }, to.to_string()));
    }
    let mut items = Vec::with_capacity(wanted.len());
    for (user, ws) in by_user(&wanted) {
        for (r, to) in ws {
            let places = at.get(&(r.user.clone(), r.guid.clone()));
            items.push(plan_one(user, r, to, places, Elsewhere::Follow, route));
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

/// Move (or expunge) the pending messages of several users in one
/// request — per user its moves (first creating each destination not
/// known to exist, or every one when `create`), then a `fetch` that shows
/// where each message ended up. Returns each message's outcome, and the
/// users whose destination folder turned out not to exist.
fn move_users(dv: &Doveadm, users: &[(String, Moves)], route: &Route, create: bool) -> (Vec<Update>, Vec<usize>) {
    let mut commands = Vec::new();
    // Per user: the range of its move commands and the range of its check.
    let mut spans = Vec::new();
    let mut created = Vec::with_capacity(users.len());
    for (user, moves) in users {
        let (source, destination) = (route.source(user), route.destination(user));
        let folders: std::collections::BTreeSet<&String> = moves.keys().map(|(_, to)| to).collect();
        let mut creates = false;
        for to in folders.into_iter().filter(|_| !route.expunge) {
            if create || !dv.has_folder(destination, to) {
                commands.push(Command::new("mailboxCreate", json!({ "user": destination, "mailbox": [to] })));
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
                let command = if route.expunge {
                    Command::new("expunge", json!({ "user": source, "query": query }))
                } else if route.crosses() {
                    let p = json!({ "user": destination, "destinationMailbox": to, "sourceType": "user",
                                    "sourceUser": source, "query": query });
                    Command::new("move", p)
                } else {
                    Command::new("move", json!({ "user": user, "destinationMailbox": to, "query": query }))
                };
                commands.push(command);
            }
        }
        let moved = first..commands.len();
        let guids: Vec<&str> = moves.values().flatten().map(|(_, g)| g.as_str()).collect();
        let checked = if route.expunge { source } else { destination };
        commands.extend(locate_commands(checked, &guids, false));
        spans.push((moved.clone(), moved.end..commands.len()));
    }
    let answers = dv.run(&commands);
    let (mut updates, mut missing_folder) = (Vec::new(), Vec::new());
    for (u, (moved, check)) in spans.into_iter().enumerate() {
        let (user, moves) = (&users[u].0, &users[u].1);
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
        let folder_missing = !route.expunge && matches!(move_error, Some(DoveadmError::Command { code: 68, .. }));
        for (_, to) in moves.keys().filter(|_| !route.expunge) {
            dv.set_folder(route.destination(user), to, !folder_missing);
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
        for ((from, to), msgs) in moves {
            for (i, guid) in msgs {
                let now = at.get(guid).map(Vec::as_slice).unwrap_or_default();
                let done = if route.expunge {
                    !now.iter().any(|pl| pl.mailbox == *from)
                } else {
                    now.iter().any(|pl| pl.mailbox == *to)
                };
                if done {
                    updates.push((*i, ItemOutcome::Done, None));
                    continue;
                }
                let places = now.iter().map(|pl| pl.mailbox.as_str()).collect::<Vec<_>>().join(", ");
                let why = match (move_error, places.is_empty()) {
                    (Some(e), _) => e.to_string(),
                    (None, true) => "it disappeared during the move".into(),
                    (None, false) if route.expunge => format!("still in {places} after the expunge"),
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
pub(super) fn execute(
    dv: &Doveadm,
    dir: &Path,
    record: &mut Record,
    progress: &dyn Fn(usize, usize),
) -> Result<(), String> {
    let mut users: BTreeMap<String, Moves> = BTreeMap::new();
    for (i, p) in record.items.iter().enumerate() {
        if let (None, Some(from)) = (p.outcome, &p.from) {
            let moves = users.entry(p.user.clone()).or_default();
            moves.entry((from.clone(), p.to.clone())).or_default().push((i, p.guid.clone()));
        }
    }
    let users: Vec<(String, Moves)> = users.into_iter().collect();
    let chunks: Vec<&[(String, Moves)]> = users.chunks(USERS_PER_REQUEST).collect();
    let route = record.route.clone();
    let work = |n: usize| {
        // A destination is created first where it is not known to exist;
        // one that vanished since is created on a second try.
        let (mut updates, missing) = move_users(dv, chunks[n], &route, false);
        if !missing.is_empty() {
            let retry: Vec<(String, Moves)> = missing.into_iter().map(|u| chunks[n][u].clone()).collect();
            updates.extend(move_users(dv, &retry, &route, true).0);
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

pub(super) fn output(record: &Record) -> MailBatchOutput {
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
            message: p.message.clone(),
            attachments: p.attachments.clone(),
            replacement: p.replacement.clone(),
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

/// The batches of one mail host.
pub struct Batches<'a> {
    pub dv: &'a Doveadm,
    /// Where their records are.
    pub dir: &'a Path,
    /// The quarantine account: its messages leave it only by a release.
    pub quarantine: &'a str,
}

impl Batches<'_> {
    /// Move the messages `which` names to folder `to` by `route` (batch
    /// `id` of `kind`).
    pub fn move_messages(
        &self,
        id: Uuid,
        kind: &str,
        which: &MailMessages,
        to: &str,
        route: Route,
        progress: &dyn Fn(usize, usize),
    ) -> Result<MailBatchOutput, String> {
        let mut record = match load(self.dir, id)? {
            Some(r) => r,
            None => {
                let (mut items, more) = match &which.search {
                    Some(query) => {
                        let found = super::search::search(self.dv, query, self.quarantine)
                            .map_err(|e| format!("the batch's search: {e}"))?;
                        (plan_found(found.messages, to, &route), found.truncated)
                    }
                    None => {
                        let (theirs, mine): (Vec<&MailRef>, Vec<&MailRef>) =
                            which.messages.iter().partition(|m| m.user != self.quarantine);
                        let wanted: Vec<(MailRef, String)> =
                            theirs.into_iter().map(|m| ((*m).clone(), to.to_string())).collect();
                        let mut items = plan(self.dv, &wanted, Elsewhere::Follow, &route);
                        items.extend(mine.into_iter().map(|m| self.refused(m, to)));
                        (items, false)
                    }
                };
                if route.to_account.is_some() {
                    // In the quarantine account, each user's messages go to
                    // the folder named after them.
                    items.iter_mut().for_each(|p| p.to.clone_from(&p.user));
                }
                let r = Record { id, kind: kind.to_string(), items, undo_of: None, more, route };
                save(self.dir, &r)?;
                r
            }
        };
        execute(self.dv, self.dir, &mut record, progress)?;
        Ok(output(&record))
    }

    /// A message of the quarantine account, which no batch but a release
    /// takes out.
    fn refused(&self, m: &MailRef, to: &str) -> Planned {
        Planned {
            user: m.user.clone(),
            guid: m.guid.clone(),
            from: None,
            to: to.to_string(),
            flags: Vec::new(),
            outcome: Some(ItemOutcome::Failed),
            error: Some(format!("{} is the quarantine account: its messages leave it only by release_email", m.user)),
            message: None,
            attachments: Vec::new(),
            replacement: None,
        }
    }

    /// Put back what batch `original` moved (as batch `id` of `kind`:
    /// `restore_email` after a move, `release_email` after a quarantine).
    pub fn restore(
        &self,
        id: Uuid,
        kind: &str,
        original: Uuid,
        undo_of: Option<String>,
        progress: &dyn Fn(usize, usize),
    ) -> Result<MailBatchOutput, String> {
        let mut record = match load(self.dir, id)? {
            Some(r) => r,
            None => {
                let done = load(self.dir, original)?
                    .ok_or_else(|| format!("this host has no record of batch {original} (nothing to put back)"))?;
                let route = done.route.reversed().ok_or("a hard delete cannot be undone: the messages are gone")?;
                let release = kind == "release_email";
                if release != route.from_account.is_some() {
                    return Err(format!(
                        "batch {original} was a {}: undo it with {}",
                        done.kind,
                        if release { "restore_email" } else { "release_email" }
                    ));
                }
                let wanted: Vec<(MailRef, String)> = done
                    .items
                    .iter()
                    .filter(|p| p.outcome == Some(ItemOutcome::Done))
                    .filter_map(|p| {
                        let back = p.from.clone()?;
                        Some((MailRef { user: p.user.clone(), mailbox: p.to.clone(), guid: p.guid.clone() }, back))
                    })
                    .collect();
                let mut items = plan(self.dv, &wanted, Elsewhere::Leave, &route);
                // An attachment quarantine left a copy without them: the
                // release takes it away once the original is back.
                let copies: HashMap<(&str, &str), &String> = done
                    .items
                    .iter()
                    .filter_map(|p| Some(((p.user.as_str(), p.guid.as_str()), p.replacement.as_ref()?)))
                    .collect();
                for p in &mut items {
                    p.replacement = copies.get(&(p.user.as_str(), p.guid.as_str())).map(|g| (*g).clone());
                }
                let r = Record { id, kind: kind.into(), items, undo_of, more: false, route };
                save(self.dir, &r)?;
                r
            }
        };
        execute(self.dv, self.dir, &mut record, progress)?;
        super::attach::remove_copies(self.dv, &record);
        Ok(output(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(places: &[&str]) -> Places {
        places
            .iter()
            .map(|m| Place { mailbox: m.to_string(), flags: vec!["\\Seen".to_string()], message: None })
            .collect()
    }

    #[test]
    fn each_message_is_planned_from_where_it_is() {
        let r = MailRef { user: "alice".into(), mailbox: "INBOX".into(), guid: "g".into() };
        let (follow, same) = (Elsewhere::Follow, &Route::default());
        let p = plan_one("alice", &r, "Junk", Some(&at(&["INBOX"])), follow, same);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("INBOX"), None));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Junk"])), follow, same);
        assert_eq!(p.outcome, Some(ItemOutcome::AlreadyThere));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Archive"])), follow, same);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("Archive"), None));
        let p = plan_one("alice", &r, "Junk", Some(&at(&["Archive"])), Elsewhere::Leave, same);
        assert_eq!(p.outcome, Some(ItemOutcome::Failed));
        assert_eq!(plan_one("alice", &r, "Junk", None, follow, same).outcome, Some(ItemOutcome::NotFound));
        let nowhere = plan_one("alice", &r, "Junk", Some(&Vec::new()), follow, same);
        assert_eq!(nowhere.outcome, Some(ItemOutcome::NotFound));
    }

    #[test]
    fn across_accounts_a_folder_of_the_same_name_is_not_the_destination() {
        // alice keeps a folder called "alice": quarantining from it is a move.
        let r = MailRef { user: "alice".into(), mailbox: "alice".into(), guid: "g".into() };
        let into = Route::into_quarantine("picket-quarantine");
        let p = plan_one("alice", &r, "alice", Some(&at(&["alice"])), Elsewhere::Follow, &into);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("alice"), None));
        // Released from the quarantine account: only alice's folder there
        // is hers, though bob's copy has the same GUID.
        let back = into.reversed().expect("a way back");
        let r = MailRef { user: "alice".into(), mailbox: "alice".into(), guid: "g".into() };
        let p = plan_one("alice", &r, "INBOX", Some(&at(&["bob", "alice"])), Elsewhere::Leave, &back);
        assert_eq!((p.from.as_deref(), p.outcome), (Some("alice"), None));
        let p = plan_one("alice", &r, "INBOX", Some(&at(&["bob"])), Elsewhere::Leave, &back);
        assert_eq!(p.outcome, Some(ItemOutcome::NotFound));
        assert!(Route::expunge().reversed().is_none(), "a hard delete has no way back");
    }

    #[test]
    fn guid_queries_are_one_element_per_value() {
        assert_eq!(any_guid(&["a", "b"]), vec!["(", "guid", "a", "OR", "guid", "b", ")"]);
    }
}
