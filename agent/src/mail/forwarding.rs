//! Mail forwarding on this host: the `redirect`s in every user's Sieve
//! scripts, and turning the external ones off and back on. Scripts are
//! read and written through doveadm's `sieve` commands, so Dovecot writes
//! each user's Sieve storage itself, as that user; the agent never opens
//! those files (they are the user's, and may be links to anywhere).
//!
//! A change is recorded before anything is written: each script's exact
//! bytes and activation before and after. A re-run of the same action
//! resumes from the record; the undo writes the exact bytes back. Either
//! one changes a script only while it holds what the record says it held
//! before: a script the user edited since is left as it is, and said so.
//! (doveadm has no compare-and-swap: an edit landing between the read and
//! the write, a few milliseconds, is not seen.)

use std::path::{Path, PathBuf};

use picket_common::actions::mail::{
    ForwardingChangeOutput, ForwardingOutput, ItemOutcome, ScriptChange, SieveRedirect, SieveScript,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::doveadm::{Command, Doveadm, DoveadmError};
use picket_common::sieve;

/// Users whose scripts are asked for in one request.
const USERS_PER_REQUEST: usize = 50;

/// One script as Dovecot holds it.
struct Held {
    user: String,
    name: String,
    active: bool,
    /// Its text, or why it could not be read.
    text: Result<String, DoveadmError>,
}

/// The users to look at: those named, or every user of Dovecot's userdb
/// but `hidden` (the quarantine account).
fn users(dv: &Doveadm, named: &[String], hidden: &str) -> Result<Vec<String>, DoveadmError> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let answer = dv.one("user", json!({ "userMask": ["*"] }))?;
    let list = answer
        .get("userList")
        .and_then(Value::as_array)
        .ok_or_else(|| DoveadmError::Protocol("the answer to a user listing holds no user list".into()))?;
    Ok(list.iter().filter_map(Value::as_str).filter(|u| *u != hidden).map(str::to_string).collect())
}

/// `users`' scripts: which there are (one request per
/// [`USERS_PER_REQUEST`] users), then each one's text.
fn read_scripts(dv: &Doveadm, users: &[String]) -> Result<Vec<Held>, DoveadmError> {
    let mut held = Vec::new();
    for chunk in users.chunks(USERS_PER_REQUEST) {
        let lists: Vec<Command> = chunk.iter().map(|u| Command::new("sieveList", json!({ "user": u }))).collect();
        let mut named = Vec::new();
        for (user, answer) in chunk.iter().zip(dv.run(&lists)?) {
            let rows = match answer {
                Ok(rows) => rows,
                // A user named who does not exist has no scripts.
                Err(e) if e.is_no_user() => continue,
                Err(e) => return Err(e),
            };
            for row in rows.as_array().into_iter().flatten() {
                let name = row.get("script").and_then(Value::as_str).unwrap_or_default();
                let active =
                    row.get("active").and_then(Value::as_str).is_some_and(|a| a.eq_ignore_ascii_case("active"));
                if !name.is_empty() {
                    named.push((user.clone(), name.to_string(), active));
                }
            }
        }
        held.extend(get(dv, named)?);
    }
    Ok(held)
}

/// Each named script's text, in one request.
fn get(dv: &Doveadm, named: Vec<(String, String, bool)>) -> Result<Vec<Held>, DoveadmError> {
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let gets: Vec<Command> = named
        .iter()
        .map(|(user, name, _)| Command::new("sieveGet", json!({ "user": user, "scriptname": name })))
        .collect();
    let answers = dv.run(&gets)?;
    Ok(named
        .into_iter()
        .zip(answers)
        .map(|((user, name, active), answer)| {
            let text = match answer {
                Ok(rows) => rows
                    .get(0)
                    .and_then(|r| r.get("sieve script"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| DoveadmError::Protocol("an answer without the script's text".into())),
                Err(e) => Err(e),
            };
            Held { user, name, active, text }
        })
        .collect())
}

/// Who forwards mail where: every script of `named` (or of every user but
/// `hidden`) that redirects mail or could not be read.
pub fn list(
    dv: &Doveadm,
    named: &[String],
    hidden: &str,
    internal: &[String],
) -> Result<ForwardingOutput, DoveadmError> {
    let users = users(dv, named, hidden)?;
    let held = read_scripts(dv, &users)?;
    let mut out = ForwardingOutput { users: users.len() as u64, scripts_read: held.len() as u64, scripts: Vec::new() };
    for h in held {
        let s = read_script(h.user, h.name, h.active, h.text.map_err(|e| e.to_string()), internal);
        if !s.redirects.is_empty() || s.error.is_some() {
            out.scripts.push(s);
        }
    }
    Ok(out)
}

/// A script as a listing shows it: its redirects (external or not by
/// `internal`), or why its text could not be read.
pub fn read_script(
    user: String,
    script: String,
    active: bool,
    text: Result<String, String>,
    internal: &[String],
) -> SieveScript {
    let mut s = SieveScript { user, script, active, redirects: Vec::new(), error: None };
    match text.and_then(|t| sieve::redirects(&t)) {
        Ok(found) => {
            s.redirects = found
                .iter()
                .map(|r| SieveRedirect { address: r.address.clone(), copy: r.copy, external: r.is_external(internal) })
                .collect()
        }
        Err(e) => s.error = Some(e),
    }
    s
}

/// One script's change: what it held before, what it holds after, and
/// whether it is the user's active script (before and after alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    user: String,
    script: String,
    active: bool,
    before: String,
    after: String,
    redirects: u32,
    outcome: Option<ItemOutcome>,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: Uuid,
    /// The change this one undoes.
    undo_of: Option<Uuid>,
    scripts: Vec<Snapshot>,
}

fn path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("forwarding-{id}.json"))
}

fn load(dir: &Path, id: Uuid) -> Result<Option<Record>, String> {
    super::read_record(&path(dir, id), &format!("forwarding record {id}"))
}

fn save(dir: &Path, record: &Record) -> Result<(), String> {
    super::write_record(&path(dir, record.id), record, &format!("forwarding record {}", record.id))
}

/// Forwarding of one host.
pub struct Forwarding<'a> {
    pub dv: &'a Doveadm,
    /// Where the records are (the mail batches' directory).
    pub dir: &'a Path,
    pub quarantine: &'a str,
    pub internal: &'a [String],
}

impl Forwarding<'_> {
    /// Take the external redirects out of the scripts of `named` (or of
    /// every user): the action `id`. A re-run of the same `id` resumes.
    pub fn disable(&self, id: Uuid, named: &[String]) -> Result<ForwardingChangeOutput, String> {
        let mut record = match load(self.dir, id)? {
            Some(r) => r,
            None => {
                let users = users(self.dv, named, self.quarantine).map_err(|e| e.to_string())?;
                let held = read_scripts(self.dv, &users).map_err(|e| e.to_string())?;
                let mut scripts = Vec::new();
                for h in held {
                    let mut s = Snapshot {
                        user: h.user,
                        script: h.name,
                        active: h.active,
                        before: String::new(),
                        after: String::new(),
                        redirects: 0,
                        outcome: None,
                        error: None,
                    };
                    let text = h.text.map_err(|e| e.to_string());
                    match text.and_then(|t| sieve::without_external(&t, self.internal).map(|(a, n)| (t, a, n))) {
                        Ok((_, _, 0)) => continue,
                        Ok((before, after, n)) => {
                            (s.before, s.after, s.redirects) = (before, after, u32::try_from(n).unwrap_or(u32::MAX))
                        }
                        Err(e) => {
                            s.outcome = Some(ItemOutcome::Failed);
                            s.error = Some(format!("left as it is: {e}"));
                        }
                    }
                    scripts.push(s);
                }
                Record { id, undo_of: None, scripts }
            }
        };
        save(self.dir, &record)?;
        apply(self.dv, self.dir, &mut record)?;
        Ok(output(&record))
    }

    /// Put back the exact scripts and activation the change `of` found:
    /// the action `id`. A re-run of the same `id` resumes.
    pub fn restore(&self, id: Uuid, of: Uuid) -> Result<ForwardingChangeOutput, String> {
        let mut record = match load(self.dir, id)? {
            Some(r) => r,
            None => {
                let done = load(self.dir, of)?.ok_or_else(|| format!("no forwarding change {of} on this host"))?;
                if done.undo_of.is_some() {
                    return Err(format!("{of} is itself an undo"));
                }
                let scripts = done
                    .scripts
                    .into_iter()
                    .filter(|s| s.outcome == Some(ItemOutcome::Done))
                    .map(|s| Snapshot { before: s.after, after: s.before, outcome: None, error: None, ..s })
                    .collect();
                Record { id, undo_of: Some(of), scripts }
            }
        };
        save(self.dir, &record)?;
        apply(self.dv, self.dir, &mut record)?;
        Ok(output(&record))
    }
}

/// Bring each pending script of `record` from `before` to `after`, per
/// [`USERS_PER_REQUEST`] scripts: read what it holds now, write it where
/// it still holds `before`, then read it again and check its activation.
fn apply(dv: &Doveadm, dir: &Path, record: &mut Record) -> Result<(), String> {
    let pending: Vec<usize> = (0..record.scripts.len()).filter(|&i| record.scripts[i].outcome.is_none()).collect();
    for chunk in pending.chunks(USERS_PER_REQUEST) {
        let named = chunk.iter().map(|&i| (record.scripts[i].user.clone(), record.scripts[i].script.clone(), false));
        let now = get(dv, named.collect()).map_err(|e| e.to_string())?;
        let mut puts = Vec::new();
        for (&i, held) in chunk.iter().zip(&now) {
            let s = &mut record.scripts[i];
            match &held.text {
                Ok(text) if *text == s.after => s.outcome = Some(ItemOutcome::AlreadyThere),
                Ok(text) if *text == s.before => puts.push(i),
                Ok(_) => {
                    s.outcome = Some(ItemOutcome::Failed);
                    s.error = Some("changed since it was read; left as it is".into());
                }
                // Dovecot's "not found" (sysexits EX_UNAVAILABLE).
                Err(e @ DoveadmError::Command { code: 68, .. }) => {
                    s.outcome = Some(ItemOutcome::NotFound);
                    s.error = Some(format!("the script is gone: {e}"));
                }
                Err(e) => {
                    s.outcome = Some(ItemOutcome::Failed);
                    s.error = Some(e.to_string());
                }
            }
        }
        let commands: Vec<Command> = puts
            .iter()
            .map(|&i| {
                let s = &record.scripts[i];
                Command::new("sievePut", json!({ "user": s.user, "scriptname": s.script, "file": s.after }))
            })
            .collect();
        if !commands.is_empty() {
            let answers = dv.run(&commands).map_err(|e| e.to_string())?;
            for (&i, answer) in puts.iter().zip(answers) {
                let s = &mut record.scripts[i];
                match answer {
                    Ok(_) => s.outcome = Some(ItemOutcome::Done),
                    Err(e) => {
                        s.outcome = Some(ItemOutcome::Failed);
                        s.error = Some(format!("Dovecot refused the script: {e}"));
                    }
                }
            }
        }
        check(dv, record, chunk)?;
        save(dir, record)?;
    }
    Ok(())
}

/// After the writes: each changed script holds `after`, and is active
/// exactly when it was (activated again, or deactivated, when not).
fn check(dv: &Doveadm, record: &mut Record, chunk: &[usize]) -> Result<(), String> {
    let changed: Vec<usize> = chunk
        .iter()
        .copied()
        .filter(|&i| matches!(record.scripts[i].outcome, Some(ItemOutcome::Done | ItemOutcome::AlreadyThere)))
        .collect();
    let mut users: Vec<String> = changed.iter().map(|&i| record.scripts[i].user.clone()).collect();
    users.sort();
    users.dedup();
    let held = read_scripts(dv, &users).map_err(|e| e.to_string())?;
    let mut fixes = Vec::new();
    for &i in &changed {
        let s = &record.scripts[i];
        let now = held.iter().find(|h| h.user == s.user && h.name == s.script);
        match now {
            Some(h) if h.text.as_ref().is_ok_and(|t| *t == s.after) => {
                if h.active != s.active {
                    fixes.push(i);
                }
            }
            _ => {
                let s = &mut record.scripts[i];
                s.outcome = Some(ItemOutcome::Failed);
                s.error = Some("not as written when read back".into());
            }
        }
    }
    let commands: Vec<Command> = fixes
        .iter()
        .map(|&i| {
            let s = &record.scripts[i];
            if s.active {
                Command::new("sieveActivate", json!({ "user": s.user, "scriptname": s.script }))
            } else {
                Command::new("sieveDeactivate", json!({ "user": s.user }))
            }
        })
        .collect();
    if !commands.is_empty() {
        let answers = dv.run(&commands).map_err(|e| e.to_string())?;
        for (&i, answer) in fixes.iter().zip(answers) {
            if let Err(e) = answer {
                let s = &mut record.scripts[i];
                s.outcome = Some(ItemOutcome::Failed);
                s.error = Some(format!("written, but its activation could not be put back: {e}"));
            }
        }
    }
    Ok(())
}

fn output(record: &Record) -> ForwardingChangeOutput {
    ForwardingChangeOutput {
        record_id: record.id,
        scripts: record
            .scripts
            .iter()
            .map(|s| ScriptChange {
                user: s.user.clone(),
                script: s.script.clone(),
                outcome: s.outcome.unwrap_or(ItemOutcome::Failed),
                error: s.error.clone(),
                redirects: s.redirects,
            })
            .collect(),
    }
}
