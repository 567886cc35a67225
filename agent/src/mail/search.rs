//! `mail_search`: one doveadm `fetch` over every user (or the users named),
//! with the criteria as a doveadm search query. Each value is its own
//! element of the query list, so no value can change the query's shape.

use picket_common::actions::mail::{AttachmentInfo, FoundMessage, MailSearch, MailSearchOutput, MessageMeta};
use serde_json::{json, Value};

use super::doveadm::{Command, Doveadm, DoveadmError};

const FIELDS: [&str; 10] = [
    "guid",
    "uid",
    "mailbox",
    "flags",
    "date.received.unixtime",
    "size.physical",
    "hdr.message-id",
    "hdr.from",
    "hdr.to",
    "hdr.subject",
];

/// Users asked in one request.
const USERS_PER_REQUEST: usize = 50;

/// The doveadm search query of `p` (every criterion must hold).
pub fn query(p: &MailSearch) -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let mut push = |parts: &[&str]| q.extend(parts.iter().map(|s| s.to_string()));
    if let Some(v) = &p.from {
        push(&["from", v]);
    }
    if let Some(v) = &p.recipient {
        push(&["(", "to", v, "OR", "cc", v, ")"]);
    }
    if let Some(v) = &p.subject {
        push(&["subject", v]);
    }
    if let Some(v) = &p.message_id {
        push(&["header", "message-id", v.trim()]);
    }
    if let Some(v) = &p.since {
        push(&["since", v]);
    }
    if let Some(v) = &p.before {
        push(&["before", v]);
    }
    // What Dovecot can narrow by; the agent then reads each candidate:
    // a link's host is in the body text (the link itself may be
    // HTML-encoded there) — unless links were wrapped at delivery, which
    // hides it in the wrapped link's encoding: those messages are read —
    // a file name in the part headers, and every message with an
    // attachment is multipart.
    if let Some(v) = &p.url {
        // (doveadm reads OR between its operands, in parentheses.)
        push(&["(", "body", &super::mime::host(v), "OR", "body", picket_common::links::PREFIX, ")"]);
    }
    if let Some(v) = &p.attachment_name {
        push(&["text", v]);
    }
    if p.attachment_sha256.is_some() {
        push(&["header", "content-type", "multipart"]);
    }
    if q.is_empty() {
        q.push("all".into());
    }
    q
}

/// The messages `p` finds, newest first; never those of the account
/// `hidden` (the quarantine account: what is in it is not the users' mail).
pub fn search(dv: &Doveadm, p: &MailSearch, hidden: &str) -> Result<MailSearchOutput, DoveadmError> {
    let query = query(p);
    let limit = p.limit as usize;
    let mut rows: Vec<FoundMessage> = Vec::new();
    if p.users.is_empty() {
        let mut fields: Vec<&str> = vec!["user"];
        fields.extend(FIELDS);
        let found = dv.one("fetch", json!({ "allUsers": true, "field": fields, "query": query }))?;
        rows.extend(read_rows(&found, None));
    } else {
        for users in p.users.chunks(USERS_PER_REQUEST) {
            let commands: Vec<Command> = users
                .iter()
                .map(|u| Command::new("fetch", json!({ "user": u, "field": FIELDS, "query": query })))
                .collect();
            for (user, answer) in users.iter().zip(dv.run(&commands)?) {
                match answer {
                    Ok(found) => rows.extend(read_rows(&found, Some(user))),
                    // A user named who does not exist has no messages.
                    Err(e) if e.is_no_user() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    rows.retain(|m| m.user != hidden);
    rows.sort_by(|a, b| {
        b.message.received.cmp(&a.message.received).then_with(|| a.user.cmp(&b.user)).then(a.uid.cmp(&b.uid))
    });
    if p.reads_content() {
        return read_content(dv, p, rows);
    }
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(MailSearchOutput { messages: rows, truncated })
}

/// Most bytes one request reads whole, and most one search reads in all.
const READ_PER_REQUEST: u64 = 64 * 1024 * 1024;
const READ_PER_SEARCH: u64 = 2 * 1024 * 1024 * 1024;

/// Read each candidate whole, newest first, until `limit` match: its
/// attachments and links, and whether they meet the content criteria. A
/// message that does not parse matches no content criterion.
fn read_content(dv: &Doveadm, p: &MailSearch, rows: Vec<FoundMessage>) -> Result<MailSearchOutput, DoveadmError> {
    let limit = p.limit as usize;
    let (mut kept, mut read, mut truncated) = (Vec::new(), 0u64, false);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        if kept.len() >= limit || read >= READ_PER_SEARCH {
            truncated = true;
            break;
        }
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while let Some(m) =
            rows.next_if(|m| chunk.is_empty() || (chunk.len() < 50 && bytes + m.message.size <= READ_PER_REQUEST))
        {
            bytes += m.message.size;
            chunk.push(m);
        }
        read += bytes;
        let commands: Vec<Command> = chunk
            .iter()
            .map(|m| {
                let query = json!(["mailbox", m.mailbox, "guid", m.guid]);
                Command::new("fetch", json!({ "user": m.user, "field": ["text"], "query": query }))
            })
            .collect();
        for (mut m, answer) in chunk.into_iter().zip(dv.run(&commands)?) {
            // Gone since, or unreadable: it cannot be shown to match.
            let Ok(found) = answer else { continue };
            let Some(text) = found.get(0).and_then(|r| r.get("text")).and_then(Value::as_str) else { continue };
            let (attachments, urls) = match super::mime::content(text.as_bytes()) {
                Ok(c) => c,
                Err(_) if !has_content_criteria(p) => (Vec::new(), Vec::new()),
                Err(_) => continue,
            };
            let name_ok =
                p.attachment_name.as_ref().is_none_or(|n| attachments.iter().any(|a| a.name.eq_ignore_ascii_case(n)));
            let sha_ok = p.attachment_sha256.as_ref().is_none_or(|h| attachments.iter().any(|a| a.sha256 == *h));
            let url_ok = p.url.as_ref().is_none_or(|u| urls.iter().any(|l| super::mime::link_matches(l, u)));
            if name_ok && sha_ok && url_ok && kept.len() < limit {
                m.attachments = attachments
                    .into_iter()
                    .map(|a| AttachmentInfo { name: a.name, sha256: a.sha256, size: a.size })
                    .collect();
                m.urls = urls;
                kept.push(m);
            } else if name_ok && sha_ok && url_ok {
                truncated = true;
            }
        }
    }
    Ok(MailSearchOutput { messages: kept, truncated })
}

fn has_content_criteria(p: &MailSearch) -> bool {
    p.url.is_some() || p.attachment_name.is_some() || p.attachment_sha256.is_some()
}

fn read_rows(found: &Value, user: Option<&str>) -> Vec<FoundMessage> {
    let Some(rows) = found.as_array() else { return Vec::new() };
    rows.iter()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            FoundMessage {
                user: user.map(str::to_string).unwrap_or_else(|| s("user")),
                mailbox: s("mailbox"),
                guid: s("guid"),
                uid: u32::try_from(number(r, "uid")).unwrap_or(0),
                message: meta(r),
                flags: super::flags(&s("flags")),
                attachments: Vec::new(),
                urls: Vec::new(),
            }
        })
        .collect()
}

fn number(row: &Value, key: &str) -> i64 {
    row.get(key).and_then(Value::as_str).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
}

/// What a `fetch` row with the header fields says the message is.
pub(crate) fn meta(row: &Value) -> MessageMeta {
    let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    MessageMeta {
        message_id: s("hdr.message-id"),
        from: s("hdr.from"),
        to: s("hdr.to"),
        subject: s("hdr.subject"),
        received: number(row, "date.received.unixtime"),
        size: u64::try_from(number(row, "size.physical")).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_is_one_element_of_the_query() {
        let p = MailSearch {
            recipient: Some("bob OR all".into()),
            subject: Some(") OR (".into()),
            message_id: Some(" <m1@x> ".into()),
            limit: 5,
            ..Default::default()
        };
        assert_eq!(
            query(&p),
            vec![
                "(",
                "to",
                "bob OR all",
                "OR",
                "cc",
                "bob OR all",
                ")",
                "subject",
                ") OR (",
                "header",
                "message-id",
                "<m1@x>"
            ]
        );
    }
}
