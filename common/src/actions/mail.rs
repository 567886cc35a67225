//! The mail kinds' parameters and results (a mail host's agent acting on
//! its Dovecot; DESIGN.md "Email").
//!
//! A message is named by its mailbox user, the mailbox it was seen in and
//! Dovecot's GUID for it (kept when a message moves between mailboxes, so
//! a batch can find a message again after it was moved). Every name a
//! request carries is checked here, on both ends, before it reaches
//! Dovecot: user names are plain login names, mailbox names carry no
//! control characters, GUIDs no spaces or brackets, and search text is
//! bounded.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most messages one batch may name (the coordinator also caps the
/// parameters at 64 KiB; a whole cluster is named by its search instead).
pub const MAX_BATCH: usize = 1_000;
/// Most messages one search returns (`limit`'s ceiling).
pub const MAX_SEARCH_RESULTS: u32 = 10_000;
/// Longest user, mailbox, GUID or search text accepted.
pub const MAX_NAME: usize = 255;
/// Most internal domains a mail host declares.
pub const MAX_DOMAINS: usize = 256;

/// Whether `name` is a DNS domain name as a mail host declares its
/// domains: lowercase letters, digits and hyphens in dot-separated labels
/// of 1 to 63, at most 253 in all.
pub fn valid_domain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// One message on a mail host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MailRef {
    /// The mailbox user (login name).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._@+=][A-Za-z0-9._@+=-]{0,254}$"))]
    pub user: String,
    /// The folder it was seen in, e.g. `INBOX`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub mailbox: String,
    /// Dovecot's message GUID.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-'*-~]{1,255}$"))]
    pub guid: String,
}

/// `mail_search`: messages on this mail host matching every criterion
/// given (text criteria match case-insensitively as substrings, like IMAP
/// SEARCH).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MailSearch {
    /// Text in the From header.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub from: Option<String>,
    /// Text in the To or Cc header.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub recipient: Option<String>,
    /// Text in the subject.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub subject: Option<String>,
    /// The Message-ID header, with or without its angle brackets.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub message_id: Option<String>,
    /// Received on or after this day (`YYYY-MM-DD`, the host's time zone).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))]
    pub since: Option<String>,
    /// Received before this day (`YYYY-MM-DD`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))]
    pub before: Option<String>,
    /// A link in the message's text: with `http://` or `https://`, exactly
    /// that URL; otherwise a domain (links to it or its subdomains).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 255,
            pattern = r"^([Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f]{1,247}|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$"
        )
    )]
    pub url: Option<String>,
    /// An attachment's file name (exact, case-insensitive).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub attachment_name: Option<String>,
    /// An attachment's SHA-256 (of its decoded content), lowercase hex.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub attachment_sha256: Option<String>,
    /// Report each message's attachments and links (every message found is
    /// read whole: slower). Implied by `url` and the attachment criteria.
    #[serde(default)]
    pub content: bool,
    /// Only these users' mailboxes (empty: every user of the host).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, max_items = 1000))]
    pub users: Vec<String>,
    /// Most messages returned (default 1,000, at most 10,000).
    #[serde(default = "default_limit")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub limit: u32,
}

fn default_limit() -> u32 {
    1000
}

impl MailSearch {
    /// Whether answering needs each message read whole.
    pub fn reads_content(&self) -> bool {
        self.content || self.url.is_some() || self.attachment_name.is_some() || self.attachment_sha256.is_some()
    }
}

/// Whether `u` is a link (`http://…`, `https://…`, no spaces) or a domain
/// name (any case), as `url` takes them.
fn url_criterion(u: &str) -> bool {
    let lower = u.to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(rest) => !rest.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control()),
        None => lower.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }),
    }
}

/// Whether `h` is a SHA-256 as Picket writes it (64 lowercase hex digits).
pub fn valid_sha256(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `soft_delete_email`, `move_to_junk`, `move_to_inbox`: the messages
/// named, or every message a search finds on the host (a whole cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MailMessages {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline, max_items = 1000))]
    pub messages: Vec<MailRef>,
    /// Instead of `messages`: what the host's search finds (up to its
    /// `limit`), resolved on the host when the batch starts.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub search: Option<MailSearch>,
}

/// `quarantine_attachment`: in each message named, the attachments that
/// match — by file name or SHA-256, every attachment when neither is
/// given — are replaced in the user's copy by a short note saying they were
/// quarantined and why; the original message goes to the quarantine
/// account (its release puts it back byte for byte).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuarantineAttachment {
    #[cfg_attr(feature = "openapi", schema(inline, min_items = 1, max_items = 100))]
    pub messages: Vec<MailRef>,
    /// Attachment file names (exact, case-insensitive).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50, value_type = Vec<String>))]
    pub names: Vec<String>,
    /// Attachment SHA-256s (of the decoded content), lowercase hex.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50, value_type = Vec<String>))]
    pub sha256: Vec<String>,
    /// Why, as the note in the user's copy says it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"))]
    pub reason: Option<String>,
}

/// Most messages one `quarantine_attachment` names (each is read whole and
/// rewritten).
pub const MAX_ATTACHMENT_BATCH: usize = 100;

pub fn check_attachments(p: &QuarantineAttachment) -> Result<(), String> {
    if p.messages.is_empty() || p.messages.len() > MAX_ATTACHMENT_BATCH {
        return Err(format!("messages: 1 to {MAX_ATTACHMENT_BATCH}"));
    }
    p.messages.iter().try_for_each(check_ref)?;
    if p.names.len() > 50 || p.sha256.len() > 50 {
        return Err("at most 50 names and 50 sha256".into());
    }
    p.names.iter().try_for_each(|n| text("every name", &Some(n.clone())))?;
    if let Some(h) =
        p.sha256.iter().find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(format!("sha256 {h:?}: 64 lowercase hex digits"));
    }
    text("reason", &p.reason)
}

/// One attachment a batch took out of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachmentInfo {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// `restore_email` and `release_email`: put back what a batch on this
/// host moved (`release_email`: out of quarantine). Only the
/// agent's own record of that batch is named: where each message goes
/// back to comes from the device, never from these parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreEmail {
    pub record_id: Uuid,
    /// Set by the coordinator's undo.
    #[serde(default)]
    pub undo_of: Option<String>,
}

/// `mail_forwarding` and `disable_external_forwarding`: whose Sieve
/// scripts (empty: every user of the host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MailUsers {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, max_items = 1000))]
    pub users: Vec<String>,
}

pub fn check_users(p: &MailUsers) -> Result<(), String> {
    if p.users.len() > 1000 {
        return Err("users: at most 1000 (none means every user)".into());
    }
    match p.users.iter().find(|u| !valid_user(u)) {
        Some(bad) => Err(format!("users: {bad:?} is not a login name")),
        None => Ok(()),
    }
}

/// Whether `user` is a plain login name.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_NAME
        && !user.starts_with('-')
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@+=-".contains(&b))
}

fn valid_mailbox(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME && !name.chars().any(char::is_control)
}

fn valid_guid(guid: &str) -> bool {
    !guid.is_empty() && guid.len() <= MAX_NAME && guid.bytes().all(|b| b.is_ascii_graphic() && b != b'(' && b != b')')
}

fn text(what: &str, value: &Option<String>) -> Result<(), String> {
    match value {
        Some(v) if v.is_empty() => Err(format!("{what} is empty")),
        Some(v) if v.chars().count() > MAX_NAME => Err(format!("{what} is longer than {MAX_NAME} characters")),
        Some(v) if v.chars().any(char::is_control) => Err(format!("{what} holds control characters")),
        _ => Ok(()),
    }
}

fn day(what: &str, value: &Option<String>) -> Result<(), String> {
    let Some(v) = value else { return Ok(()) };
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let number = |r: std::ops::Range<usize>| v[r].parse::<u32>().unwrap_or(0);
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} must be a day, YYYY-MM-DD"))
    }
}

/// Check one message reference.
pub fn check_ref(m: &MailRef) -> Result<(), String> {
    if !valid_user(&m.user) {
        return Err(format!("user {:?}: letters, digits and ._@+=- only (not leading -), 1 to 255", m.user));
    }
    if !valid_mailbox(&m.mailbox) {
        return Err(format!("mailbox {:?}: 1 to 255 characters, no control characters", m.mailbox));
    }
    if !valid_guid(&m.guid) {
        return Err(format!("guid {:?}: 1 to 255 visible characters, no brackets", m.guid));
    }
    Ok(())
}

pub fn check_search(p: &MailSearch) -> Result<(), String> {
    text("from", &p.from)?;
    text("recipient", &p.recipient)?;
    text("subject", &p.subject)?;
    text("message_id", &p.message_id)?;
    day("since", &p.since)?;
    day("before", &p.before)?;
    text("url", &p.url)?;
    if p.url.as_deref().is_some_and(|u| !url_criterion(u)) {
        return Err("url: a link starting http:// or https://, or a domain name".into());
    }
    text("attachment_name", &p.attachment_name)?;
    if p.attachment_sha256.as_deref().is_some_and(|h| !valid_sha256(h)) {
        return Err("attachment_sha256: 64 lowercase hex digits".into());
    }
    if !(1..=MAX_SEARCH_RESULTS).contains(&p.limit) {
        return Err(format!("limit must be 1..={MAX_SEARCH_RESULTS}"));
    }
    if p.users.len() > 1000 {
        return Err("at most 1000 users".into());
    }
    if let Some(u) = p.users.iter().find(|u| !valid_user(u)) {
        return Err(format!("user {u:?}: letters, digits and ._@+=- only (not leading -), 1 to 255"));
    }
    let criteria = [
        &p.from,
        &p.recipient,
        &p.subject,
        &p.message_id,
        &p.since,
        &p.before,
        &p.url,
        &p.attachment_name,
        &p.attachment_sha256,
    ];
    if criteria.iter().all(|c| c.is_none()) {
        return Err("give at least one of from, recipient, subject, message_id, since, before, url, \
                    attachment_name, attachment_sha256"
            .into());
    }
    Ok(())
}

pub fn check_messages(p: &MailMessages) -> Result<(), String> {
    match (p.messages.is_empty(), &p.search) {
        (true, Some(search)) => check_search(search),
        (false, None) if p.messages.len() <= MAX_BATCH => p.messages.iter().try_for_each(check_ref),
        (false, None) => Err(format!("messages: at most {MAX_BATCH} (name a whole cluster by its search)")),
        _ => Err("give messages or search (one of them)".into()),
    }
}

/// One message a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FoundMessage {
    pub user: String,
    pub mailbox: String,
    pub guid: String,
    pub uid: u32,
    /// Its headers, received date and size (as fields of this object).
    #[serde(flatten)]
    pub message: MessageMeta,
    pub flags: Vec<String>,
    /// Its attachments (when the search read content).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentInfo>,
    /// The links in its text (when the search read content; at most 100).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// `mail_search`'s result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailSearchOutput {
    pub messages: Vec<FoundMessage>,
    /// More messages matched than `limit` (or more than the search reads
    /// whole in one go).
    pub truncated: bool,
}

/// How one message of a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    Done,
    Failed,
    /// It was already where the batch moves it (nothing done).
    AlreadyThere,
    /// Not in any of the user's mailboxes.
    NotFound,
}

impl ItemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::AlreadyThere => "already_there",
            Self::NotFound => "not_found",
        }
    }
}

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItem {
    pub user: String,
    pub guid: String,
    /// Where it was when the batch began (None: not found).
    pub from: Option<String>,
    /// Where the batch puts it.
    pub to: String,
    pub outcome: ItemOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its flags when the batch began.
    #[serde(default)]
    pub flags: Vec<String>,
    /// What the message was (a hard delete keeps this in its result, the
    /// audit of what is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageMeta>,
    /// The attachments taken out (`quarantine_attachment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentInfo>,
    /// The GUID of the user's copy without them (`quarantine_attachment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// A message's headers and size, as stored (encoded words not decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageMeta {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    /// Internal (received) date, Unix seconds.
    pub received: i64,
    pub size: u64,
}

/// Counts of a batch's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchCounts {
    pub done: u64,
    pub failed: u64,
    pub already_there: u64,
    pub not_found: u64,
}

impl BatchCounts {
    pub fn of(items: &[MailItem]) -> Self {
        let mut c = Self::default();
        for i in items {
            match i.outcome {
                ItemOutcome::Done => c.done += 1,
                ItemOutcome::Failed => c.failed += 1,
                ItemOutcome::AlreadyThere => c.already_there += 1,
                ItemOutcome::NotFound => c.not_found += 1,
            }
        }
        c
    }
}

/// A batch's result (moves and their restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailBatchOutput {
    /// The agent's record of this batch (what `restore_email` names).
    pub record_id: Uuid,
    pub counts: BatchCounts,
    pub items: Vec<MailItem>,
    /// Set when this batch undoes another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<String>,
    /// The batch's search found more than its limit: run it again for the rest.
    #[serde(default)]
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(user: &str, mailbox: &str, guid: &str) -> MailRef {
        MailRef { user: user.into(), mailbox: mailbox.into(), guid: guid.into() }
    }

    #[test]
    fn names_that_could_steer_dovecot_are_refused() {
        assert!(check_ref(&r("alice", "INBOX", "1796610141.M362184P8720.vm,S=350,W=362")).is_ok());
        assert!(check_ref(&r("alice@example.org", "Recoverable Items", "abc")).is_ok());
        for bad in [
            r("-alice", "INBOX", "g"),
            r("al ice", "INBOX", "g"),
            r("*", "INBOX", "g"),
            r("alice", "IN\nBOX", "g"),
            r("alice", "", "g"),
            r("alice", "INBOX", "a b"),
            r("alice", "INBOX", ")"),
            r("alice", "INBOX", ""),
        ] {
            assert!(check_ref(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn internal_domains_are_plain_lowercase_dns_names() {
        for ok in ["example.org", "mail-1.example.co.uk", "localhost"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in ["", "Example.org", "a..b", "-a.org", "a-.org", "a b.org", "exa_mple.org", "x.", &"a".repeat(64)] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_names_messages_or_a_search_never_both() {
        let search = MailSearch { message_id: Some("<m@x>".into()), limit: 10, ..Default::default() };
        let refs = vec![r("alice", "INBOX", "g")];
        assert!(check_messages(&MailMessages { messages: refs.clone(), search: None }).is_ok());
        assert!(check_messages(&MailMessages { messages: Vec::new(), search: Some(search.clone()) }).is_ok());
        assert!(check_messages(&MailMessages { messages: refs, search: Some(search) }).is_err());
        assert!(check_messages(&MailMessages::default()).is_err());
    }

    #[test]
    fn a_search_needs_a_criterion_and_bounded_text() {
        assert!(check_search(&MailSearch { limit: 10, ..Default::default() }).is_err());
        let ok = MailSearch { subject: Some("Invoice".into()), limit: 10, ..Default::default() };
        assert!(check_search(&ok).is_ok());
        for day in ["2026-1-1", "0000-00-00", "2026-13-01", "2026-12-32"] {
            let bad_day = MailSearch { since: Some(day.into()), limit: 10, ..Default::default() };
            assert!(check_search(&bad_day).expect_err("day").contains("YYYY-MM-DD"), "{day}");
        }
        for url in ["https://evil.example/pay?x=1", "HTTP://X", "evil.example", "Evil.Example"] {
            let ok = MailSearch { url: Some(url.into()), limit: 10, ..Default::default() };
            assert!(check_search(&ok).is_ok(), "{url}");
        }
        for url in ["evil example", "ftp://x", "https://", "-x.example", "a..b", "https://a b"] {
            let bad = MailSearch { url: Some(url.into()), limit: 10, ..Default::default() };
            assert!(check_search(&bad).is_err(), "{url}");
        }
        let sha = MailSearch { attachment_sha256: Some("AB".repeat(32)), limit: 10, ..Default::default() };
        assert!(check_search(&sha).is_err(), "upper-case hex");
        let long = MailSearch { from: Some("x".repeat(300)), limit: 10, ..Default::default() };
        assert!(check_search(&long).is_err());
        let zero = MailSearch { subject: Some("x".into()), limit: 0, ..Default::default() };
        assert!(check_search(&zero).is_err());
    }
}

/// One detection in a message's attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentDetection {
    /// The attachment's file name ("" when it has none).
    pub attachment: String,
    pub sha256: String,
    pub size: u64,
    /// The rule, or `indicator` for a block-listed SHA-256.
    pub rule: String,
    pub namespace: String,
    pub severity: crate::detection::Severity,
}

/// A scanned message with detections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScannedMessage {
    pub user: String,
    pub mailbox: String,
    pub guid: String,
    pub message_id: String,
    pub from: String,
    pub subject: String,
    /// Internal (received) date, Unix seconds.
    pub received: i64,
    pub detections: Vec<AttachmentDetection>,
    /// Its links on the host's URL blocklist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_links: Vec<BlockedLink>,
}

/// A link in a scanned message that the host's URL blocklist blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockedLink {
    pub url: String,
    /// The `block_url` action that blocks it.
    pub block_id: Uuid,
    pub match_type: UrlMatch,
    /// What the block names (a link, a domain, a prefix).
    pub value: String,
}

/// `mail_scan`'s result: the messages whose attachments the agent's rules
/// or indicators flag, or whose links the host's URL blocklist blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailScanOutput {
    /// Messages read and scanned.
    pub scanned: u64,
    /// Attachments scanned.
    pub attachments: u64,
    /// Links checked against the URL blocklist (at most 100 per message;
    /// a wrapped link counts as the original it leads to).
    pub links: u64,
    /// Blocks in the URL blocklist the links were checked against.
    pub url_blocks: u64,
    /// The blocklist the agent holds is not the whole list (it did not fit
    /// a frame): the oldest blocks were not checked.
    pub url_blocklist_truncated: bool,
    /// Messages that could not be read (gone, unreadable, malformed).
    pub unreadable: u64,
    pub messages: Vec<ScannedMessage>,
    /// The search found more than its limit (or more than one scan reads).
    pub truncated: bool,
}

/// One `redirect` in a user's Sieve script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SieveRedirect {
    /// Where it sends mail; absent when only known at delivery (a
    /// variable, a list).
    pub address: Option<String>,
    /// `:copy`: the user keeps the message too.
    pub copy: bool,
    /// Outside the host's internal domains (an address only known at
    /// delivery counts as outside).
    pub external: bool,
}

/// One Sieve script of a user, with where it forwards mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SieveScript {
    pub user: String,
    /// The script's name in the user's Sieve storage.
    pub script: String,
    /// Whether it is the user's active script (the one delivery runs).
    pub active: bool,
    pub redirects: Vec<SieveRedirect>,
    /// Why the script could not be read or parsed (it is then never
    /// changed).
    pub error: Option<String>,
}

/// Who forwards mail where: every script with a redirect, or that could
/// not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwardingOutput {
    /// Users whose scripts were read.
    pub users: u64,
    /// Scripts read.
    pub scripts_read: u64,
    pub scripts: Vec<SieveScript>,
}

/// How one script ended in `disable_external_forwarding` or its undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptChange {
    pub user: String,
    pub script: String,
    /// Done; failed (with why); already there (nothing to change: no
    /// external redirect left, or already restored); not found (the
    /// script is gone).
    pub outcome: ItemOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// External redirects taken out (or put back, by the undo).
    #[serde(default)]
    pub redirects: u32,
}

/// `disable_external_forwarding`'s result, and its undo's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingChangeOutput {
    /// The agent's record of the change (what the undo names): each
    /// script's exact bytes and activation before it.
    pub record_id: Uuid,
    pub scripts: Vec<ScriptChange>,
}

/// How a blocked URL matches a clicked link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UrlMatch {
    /// This link (scheme and host in any case, the rest as written).
    #[default]
    Exact,
    /// Any link on this domain or a subdomain of it.
    Domain,
    /// Any link that starts with this.
    Prefix,
}

impl UrlMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Domain => "domain",
            Self::Prefix => "prefix",
        }
    }
}

/// Longest URL or prefix a block names.
pub const MAX_BLOCKED_URL: usize = 2048;

/// `block_url`: the click listener refuses the mail host's wrapped links
/// that match, from now on (messages delivered before included). Run by
/// the coordinator, never sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BlockUrl {
    /// An `http(s)://` link or prefix, or (`match_type` domain) a domain
    /// name in lower case.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub value: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub match_type: UrlMatch,
    /// When the block lifts by itself (Unix ms; none: when undone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

pub fn check_block_url(p: &BlockUrl) -> Result<(), String> {
    if p.value.len() > MAX_BLOCKED_URL {
        return Err(format!("value: at most {MAX_BLOCKED_URL} bytes"));
    }
    match p.match_type {
        UrlMatch::Exact | UrlMatch::Prefix if !crate::links::is_web(&p.value) => {
            Err("value: an http:// or https:// link (or match_type \"domain\" with a domain name)".into())
        }
        UrlMatch::Domain if !valid_domain(&p.value) => {
            Err("value: a domain name in lower case, such as phish.example".into())
        }
        _ if p.expires_at.is_some_and(|t| t <= 0) => Err("expires_at: Unix milliseconds".into()),
        _ => Ok(()),
    }
}

/// `block_url`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockUrlOutput {
    /// The blocklist entry (what the undo lifts).
    pub block_id: Uuid,
    pub value: String,
    pub match_type: UrlMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// `unblock_url`: the undo of `block_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UnblockUrl {
    pub block_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<String>,
}

/// `unblock_url`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnblockUrlOutput {
    pub block_id: Uuid,
    /// False when the block was already gone (lifted before).
    pub removed: bool,
}
