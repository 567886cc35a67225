//! A mail host's URL blocklist (the `block_url` actions in force on it),
//! and how a link is checked against it: exact links, domains (and their
//! subdomains), and prefixes, each a hash lookup. The coordinator's click
//! listener checks clicks with it; the mail host's agent checks the links
//! of the mail it scans with the same code, against the copy the
//! coordinator sends it ([`crate::proto::CoordMsg::UrlBlocklist`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actions::mail::UrlMatch;
use crate::links::host;

/// What a mail host's agent lists in its capabilities when it takes the
/// host's blocklist (every agent with a `[mail]` section).
pub const CAPABILITY: &str = "url_blocklist";

/// The rule (namespace [`NAMESPACE`]) of the alert a mail host raises for
/// a message linking to a blocked URL.
pub const MAIL_RULE: &str = "blocked_url";
pub const NAMESPACE: &str = "picket";

/// The alert path of a blocked link in a message: `mail:<user>/<folder>/<GUID> <url>`
/// (a link never holds a space).
pub fn mail_path(user: &str, mailbox: &str, guid: &str, url: &str) -> String {
    format!("mail:{user}/{mailbox}/{guid} {url}")
}

/// The SHA-256 an alert about a URL carries (of the mail host or the click
/// listener): the URL's own, so alerts about one URL group together.
pub fn alert_sha256(url: &str) -> String {
    crate::detection::sha256_hex(url.as_bytes())
}

/// The link a [`mail_path`] names.
pub fn link_of_mail_path(path: &str) -> Option<&str> {
    let (_, url) = path.strip_prefix("mail:")?.rsplit_once(' ')?;
    crate::links::is_web(url).then_some(url)
}

/// One block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedUrl {
    /// The `block_url` action that made it.
    pub id: Uuid,
    pub match_type: UrlMatch,
    pub value: String,
    /// The operator's reason.
    pub comment: String,
    /// Unix ms; past it the block no longer applies.
    pub expires_at: Option<i64>,
}

/// A mail host's blocklist as the coordinator sends it: everything in
/// force, newest first, unless it would not fit one frame (`truncated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBlocklist {
    pub entries: Vec<BlockedUrl>,
    /// Older entries were left out to fit a frame.
    pub truncated: bool,
}

/// `scheme://authority` in lower case, the rest as it is: how links are
/// compared (a host name's case never matters; a path's may).
pub fn normalize(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest[..cut].to_ascii_lowercase();
    let authority = authority.strip_suffix('.').unwrap_or(&authority);
    let path = if rest[cut..].is_empty() { "/" } else { &rest[cut..] };
    format!("{}://{}{}", scheme.to_ascii_lowercase(), authority, path)
}

/// One mail host's blocklist, ready for checks.
#[derive(Debug, Default)]
pub struct Blocklist {
    entries: Vec<BlockedUrl>,
    exact: HashMap<String, usize>,
    domains: HashMap<String, usize>,
    prefixes: HashMap<String, usize>,
    /// The lengths of the prefixes, so a check looks up only those.
    prefix_lengths: Vec<usize>,
}

impl Blocklist {
    pub fn new(entries: Vec<BlockedUrl>) -> Self {
        let mut list = Self { entries, ..Self::default() };
        for (i, e) in list.entries.iter().enumerate() {
            match e.match_type {
                UrlMatch::Exact => {
                    list.exact.insert(normalize(&e.value), i);
                }
                UrlMatch::Domain => {
                    list.domains.insert(e.value.trim_end_matches('.').to_ascii_lowercase(), i);
                }
                UrlMatch::Prefix => {
                    let p = normalize(&e.value);
                    list.prefix_lengths.push(p.len());
                    list.prefixes.insert(p, i);
                }
            }
        }
        list.prefix_lengths.sort_unstable();
        list.prefix_lengths.dedup();
        list
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[BlockedUrl] {
        &self.entries
    }

    /// The entry that blocks `url` at `now` (Unix ms), if one does.
    pub fn check(&self, url: &str, now: i64) -> Option<&BlockedUrl> {
        let live = |i: &usize| self.entries.get(*i).filter(|e| e.expires_at.is_none_or(|t| t > now));
        let normal = normalize(url);
        if let Some(e) = self.exact.get(&normal).and_then(live) {
            return Some(e);
        }
        let host = host(url);
        let mut domain = host.as_str();
        loop {
            if let Some(e) = self.domains.get(domain).and_then(live) {
                return Some(e);
            }
            match domain.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => domain = parent,
                _ => break,
            }
        }
        for &n in &self.prefix_lengths {
            let Some(head) = normal.get(..n) else { break };
            if let Some(e) = self.prefixes.get(head).and_then(live) {
                return Some(e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(match_type: UrlMatch, value: &str, expires_at: Option<i64>) -> BlockedUrl {
        BlockedUrl { id: Uuid::new_v4(), match_type, value: value.into(), comment: String::new(), expires_at }
    }

    #[test]
    fn a_blocked_links_alert_path_names_the_link() {
        let path = mail_path("alice", "Old mail", "g1", "https://evil.example/x?a=1");
        assert_eq!(path, "mail:alice/Old mail/g1 https://evil.example/x?a=1");
        assert_eq!(link_of_mail_path(&path), Some("https://evil.example/x?a=1"));
        assert_eq!(link_of_mail_path("mail:alice/INBOX/g1/invoice.pdf"), None);
        assert_eq!(link_of_mail_path("/tmp/x https://evil.example/"), None);
    }

    #[test]
    fn exact_domain_and_prefix_entries_match_what_they_name_only() {
        let list = Blocklist::new(vec![
            block(UrlMatch::Exact, "https://Evil.example/login?a=1", None),
            block(UrlMatch::Domain, "bad.example", None),
            block(UrlMatch::Prefix, "https://cdn.example/payload/", None),
            block(UrlMatch::Domain, "gone.example", Some(1_000)),
        ]);
        let hit = |u: &str| list.check(u, 2_000).map(|b| b.match_type);
        assert_eq!(hit("https://evil.example/login?a=1"), Some(UrlMatch::Exact));
        assert_eq!(hit("HTTPS://EVIL.EXAMPLE/login?a=1"), Some(UrlMatch::Exact));
        assert_eq!(hit("https://evil.example/login?a=2"), None);
        assert_eq!(hit("https://evil.example/LOGIN?a=1"), None);
        assert_eq!(hit("http://bad.example"), Some(UrlMatch::Domain));
        assert_eq!(hit("https://a.b.BAD.example:8443/x"), Some(UrlMatch::Domain));
        assert_eq!(hit("https://user@bad.example./x"), Some(UrlMatch::Domain));
        assert_eq!(hit("https://notbad.example/"), None);
        assert_eq!(hit("https://cdn.example/payload/x.exe"), Some(UrlMatch::Prefix));
        assert_eq!(hit("https://cdn.example/pay"), None);
        // Expired entries no longer block.
        assert_eq!(hit("https://gone.example/"), None);
        assert_eq!(list.check("https://gone.example/", 500).map(|b| b.value.as_str()), Some("gone.example"));
        assert!(Blocklist::default().check("https://bad.example/", 0).is_none());
    }
}
