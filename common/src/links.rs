//! Wrapped links (time-of-click protection, DESIGN.md "Email").
//!
//! At delivery a mail host rewrites each link of an inbound message to the
//! coordinator's click listener:
//!
//! ```text
//! https://CLICK-HOST/l/v1/<url>/<ref>/<sig>
//! ```
//!
//! - `<url>`: the original link, base64url (no padding);
//! - `<ref>`: base64url of the mail host's device id (16 bytes), the
//!   recipient, a NUL, and the Message-ID (the click log's "who and which
//!   message");
//! - `<sig>`: the first 16 bytes of HMAC-SHA256 over both, with the mail
//!   host's link key, base64url.
//!
//! The link key is the coordinator's click secret narrowed to one device
//! ([`device_key`]): a mail host can sign links naming itself, never links
//! that claim to come from another host. The link carries everything the
//! click needs, so no database row exists per delivered link.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use uuid::Uuid;

/// What a mail host's agent lists in its capabilities when it takes a
/// link key (it has a `[mail] link_key_file`).
pub const CAPABILITY: &str = "link_key";
/// The path every wrapped link starts with.
pub const PREFIX: &str = "/l/v1/";
/// Longest original link that is wrapped (bytes). Longer ones are left as
/// they are and reported by the filter.
pub const MAX_URL: usize = 8192;
/// Longest recipient a link names (bytes; an address is at most 320).
pub const MAX_RECIPIENT: usize = 320;
/// Longest Message-ID a link names as is; a longer one is named by its
/// SHA-256 (`sha256:<hex>`).
pub const MAX_MESSAGE_ID: usize = 250;
const SIG_BYTES: usize = 16;

/// What a wrapped link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The original link (`http://` or `https://`).
    pub url: String,
    /// The mail host that delivered the message.
    pub device: Uuid,
    /// Who the message was delivered to.
    pub recipient: String,
    /// The message's Message-ID (as in its header, or `sha256:<hex>`).
    pub message_id: String,
}

/// A mail host's link key: HMAC-SHA256 of its device id under the
/// coordinator's click secret.
pub fn device_key(secret: &[u8], device: Uuid) -> [u8; 32] {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        &[b"picket link key v1\0", &device.as_bytes()[..]].concat(),
    );
    let mut key = [0u8; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

/// The Message-ID as a link names it: as is when short, else its SHA-256.
pub fn message_ref(message_id: &str) -> String {
    if message_id.len() <= MAX_MESSAGE_ID && !message_id.contains('\0') {
        message_id.to_string()
    } else {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(message_id.as_bytes())))
    }
}

/// The wrapped form of `link.url` under `base` (`https://host:port`, no
/// trailing slash), signed with `key`. `None` when the link cannot be
/// wrapped: not http(s), longer than [`MAX_URL`], or a recipient longer
/// than [`MAX_RECIPIENT`] or holding a NUL.
pub fn wrap(base: &str, key: &[u8; 32], link: &Link) -> Option<String> {
    Signer::new(base, key, link.device, &link.recipient, &link.message_id)?.wrap(&link.url)
}

/// Wraps the links of one message to one recipient: the reference and the
/// HMAC key are made once, not per link (a newsletter has hundreds).
pub struct Signer {
    base: String,
    key: hmac::Key,
    reference: String,
}

impl Signer {
    /// `None` when the recipient is longer than [`MAX_RECIPIENT`] or holds
    /// a NUL.
    pub fn new(base: &str, key: &[u8; 32], device: Uuid, recipient: &str, message_id: &str) -> Option<Self> {
        if recipient.len() > MAX_RECIPIENT || recipient.contains('\0') {
            return None;
        }
        let message_id = message_ref(message_id);
        let mut reference = Vec::with_capacity(16 + recipient.len() + 1 + message_id.len());
        reference.extend_from_slice(device.as_bytes());
        reference.extend_from_slice(recipient.as_bytes());
        reference.push(0);
        reference.extend_from_slice(message_id.as_bytes());
        Some(Self {
            base: base.trim_end_matches('/').to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            reference: B64.encode(reference),
        })
    }

    /// `url` wrapped; `None` when it is not http(s) or longer than [`MAX_URL`].
    pub fn wrap(&self, url: &str) -> Option<String> {
        if !is_web(url) || url.len() > MAX_URL {
            return None;
        }
        let url = B64.encode(url.as_bytes());
        let sig = B64.encode(signature(&self.key, &url, &self.reference));
        let mut out = String::with_capacity(self.base.len() + PREFIX.len() + url.len() + self.reference.len() + 26);
        for piece in [&self.base, PREFIX, &url, "/", &self.reference, "/", &sig] {
            out.push_str(piece);
        }
        Some(out)
    }
}

/// Why a click's path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not a wrapped link")]
    Malformed,
    #[error("the link's signature does not match: it was altered or forged")]
    BadSignature,
}

/// A click's path, read but not yet trusted: [`Unverified::verify`] with
/// the key of [`Unverified::device`] makes it a [`Link`].
#[derive(Debug)]
pub struct Unverified<'a> {
    url: &'a str,
    reference: &'a str,
    sig: [u8; SIG_BYTES],
    device: Uuid,
}

/// Read the path of a click (`/l/v1/<url>/<ref>/<sig>`).
pub fn parse(path: &str) -> Result<Unverified<'_>, LinkError> {
    let rest = path.strip_prefix(PREFIX).ok_or(LinkError::Malformed)?;
    let mut parts = rest.split('/');
    let (Some(url), Some(reference), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(LinkError::Malformed);
    };
    if url.len() > MAX_URL * 4 / 3 + 4 || reference.len() > 1024 {
        return Err(LinkError::Malformed);
    }
    let sig: [u8; SIG_BYTES] = B64.decode(sig).ok().and_then(|s| s.try_into().ok()).ok_or(LinkError::Malformed)?;
    let decoded = B64.decode(reference).map_err(|_| LinkError::Malformed)?;
    let device = Uuid::from_slice(decoded.get(..16).ok_or(LinkError::Malformed)?).map_err(|_| LinkError::Malformed)?;
    Ok(Unverified { url, reference, sig, device })
}

impl Unverified<'_> {
    /// The mail host the link claims to come from: whose key checks it.
    pub fn device(&self) -> Uuid {
        self.device
    }

    /// The link, if `key` signed it.
    pub fn verify(self, key: &[u8; 32]) -> Result<Link, LinkError> {
        let want = signature(&hmac::Key::new(hmac::HMAC_SHA256, key), self.url, self.reference);
        // Constant time: a forger learns nothing from how long a refusal takes.
        if want.iter().zip(self.sig.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(LinkError::BadSignature);
        }
        // Signed by the host; still checked, as a host's key may leak.
        let url = B64.decode(self.url).ok().and_then(|u| String::from_utf8(u).ok()).ok_or(LinkError::Malformed)?;
        let reference = B64.decode(self.reference).map_err(|_| LinkError::Malformed)?;
        let (recipient, message_id) = reference
            .get(16..)
            .and_then(|r| {
                let nul = r.iter().position(|&b| b == 0)?;
                Some((String::from_utf8(r[..nul].to_vec()).ok()?, String::from_utf8(r[nul + 1..].to_vec()).ok()?))
            })
            .ok_or(LinkError::Malformed)?;
        if !is_web(&url) {
            return Err(LinkError::Malformed);
        }
        Ok(Link { url, device: self.device, recipient, message_id })
    }
}

fn signature(key: &hmac::Key, url: &str, reference: &str) -> [u8; SIG_BYTES] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(b"picket-link-v1\0");
    ctx.update(url.as_bytes());
    ctx.update(b"\0");
    ctx.update(reference.as_bytes());
    let mut sig = [0u8; SIG_BYTES];
    sig.copy_from_slice(&ctx.sign().as_ref()[..SIG_BYTES]);
    sig
}

/// The original a wrapped link names (`https://…/l/v1/<url>/<ref>/<sig>`),
/// read without checking its signature: for finding mail by where its
/// links really lead (mail_scan, mail_search), never for following one.
pub fn unwrapped(link: &str) -> Option<String> {
    let rest = link.split_once("://")?.1;
    let path = rest.get(rest.find('/')?..)?.split(['?', '#']).next()?;
    let url = B64.decode(parse(path).ok()?.url).ok().and_then(|u| String::from_utf8(u).ok())?;
    is_web(&url).then_some(url)
}

/// The host of `link` (`http://user@Host:80/x` → `host`): lower case,
/// without user, port or trailing dot.
pub fn host(link: &str) -> String {
    let rest = link.split_once("://").map_or(link, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `http://…` or `https://…` (any case), with something after it, and no
/// control characters or spaces: the only links a click may lead to.
pub fn is_web(url: &str) -> bool {
    let scheme = |s: &str| url.get(..s.len()).is_some_and(|h| h.eq_ignore_ascii_case(s));
    let rest = if scheme("https://") {
        &url[8..]
    } else if scheme("http://") {
        &url[7..]
    } else {
        return false;
    };
    !rest.is_empty() && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The file the delivery filter (`picket-linkwrap`) reads: the click
/// listener's base URL, the mail host's device id, and its link key. The
/// agent writes it whenever the coordinator sends a key; root owns it, the
/// mail group reads it.
#[cfg(feature = "mail")]
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub click_url: String,
    pub device: Uuid,
    pub key: [u8; 32],
}

#[cfg(feature = "mail")]
impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("click_url", &self.click_url)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "mail")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileText {
    click_url: String,
    device: Uuid,
    key: String,
}

#[cfg(feature = "mail")]
impl KeyFile {
    pub fn to_text(&self) -> String {
        let text = KeyFileText { click_url: self.click_url.clone(), device: self.device, key: hex::encode(self.key) };
        format!(
            "# Written by picket-agent: the key this mail host signs wrapped links with.\n{}",
            toml::to_string(&text).unwrap_or_default()
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let t: KeyFileText = toml::from_str(text).map_err(|e| e.to_string())?;
        let key =
            hex::decode(&t.key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()).ok_or("key: not 32 bytes in hex")?;
        if !is_web(&t.click_url) {
            return Err("click_url: not an http(s) URL".into());
        }
        Ok(Self { click_url: t.click_url.trim_end_matches('/').to_string(), device: t.device, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            url: "https://evil.example/login?a=1&b=2#x".into(),
            device: Uuid::from_u128(0x1234),
            recipient: "alice@example.org".into(),
            message_id: "<m1@x.example>".into(),
        }
    }

    #[test]
    fn a_wrapped_link_reads_back_with_its_hosts_key_only() {
        let key = device_key(b"secret", Uuid::from_u128(0x1234));
        let wrapped = wrap("https://click.example:8443/", &key, &link()).expect("wraps");
        let path = wrapped.strip_prefix("https://click.example:8443").expect("base");
        let got = parse(path).expect("parses");
        assert_eq!(got.device(), Uuid::from_u128(0x1234));
        assert_eq!(got.verify(&key).expect("verifies"), link());
        // Another host's key (or another secret) does not verify it.
        let other = device_key(b"secret", Uuid::from_u128(0x9999));
        assert_eq!(parse(path).expect("parses").verify(&other).unwrap_err(), LinkError::BadSignature);
    }

    #[test]
    fn a_wrapped_link_names_its_original_and_nothing_else_does() {
        let wrapped = wrap("https://click.example:8443", &[7; 32], &link()).expect("wraps");
        assert_eq!(unwrapped(&wrapped).as_deref(), Some(link().url.as_str()));
        for other in ["https://evil.example/l/v1/x", "https://c/l/v1/!!/aGk/aGk", "mailto:x", "https://c", ""] {
            assert_eq!(unwrapped(other), None, "{other}");
        }
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let key = device_key(b"secret", Uuid::from_u128(0x1234));
        let wrapped = wrap("https://c", &key, &link()).expect("wraps");
        let path = &wrapped["https://c".len()..];
        for i in PREFIX.len()..path.len() {
            let mut bytes = path.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let Ok(altered) = String::from_utf8(bytes) else { continue };
            if altered == path {
                continue;
            }
            match parse(&altered) {
                Err(_) => {}
                Ok(u) => assert!(u.verify(&key).is_err(), "byte {i} altered still verifies: {altered}"),
            }
        }
    }

    #[test]
    fn only_web_links_are_wrapped_or_followed() {
        let key = [7u8; 32];
        for url in ["javascript:alert(1)", "data:text/html,x", "https://", "http://a b", "ftp://x"] {
            assert!(wrap("https://c", &key, &Link { url: url.into(), ..link() }).is_none(), "{url}");
        }
        assert!(wrap("https://c", &key, &Link { url: "HTTPS://X.example".into(), ..link() }).is_some());
        // The shortest reference there is: no recipient, no Message-ID.
        let bare = Link { recipient: String::new(), message_id: String::new(), ..link() };
        let wrapped = wrap("https://c", &key, &bare).expect("wraps");
        assert_eq!(parse(&wrapped["https://c".len()..]).expect("parses").verify(&key).expect("verifies"), bare);
        let long = Link { message_id: "x".repeat(MAX_MESSAGE_ID + 1), ..link() };
        let wrapped = wrap("https://c", &key, &long).expect("wraps");
        let back = parse(&wrapped["https://c".len()..]).expect("parses").verify(&key).expect("verifies");
        assert!(back.message_id.starts_with("sha256:"));
    }

    #[cfg(feature = "mail")]
    #[test]
    fn the_key_file_reads_back_and_refuses_what_is_not_one() {
        let file = KeyFile { click_url: "https://click.example:7444".into(), device: Uuid::from_u128(7), key: [9; 32] };
        assert_eq!(KeyFile::parse(&file.to_text()).expect("reads"), file);
        assert!(!format!("{file:?}").contains("09"), "the key stays out of logs");
        for bad in
            ["", "click_url = \"javascript:x\"\ndevice = \"00000000-0000-0000-0000-000000000007\"\nkey = \"00\"\n"]
        {
            assert!(KeyFile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_paths_are_refused_without_panic() {
        for path in
            ["", "/", "/l/v1/", "/l/v1/a/b", "/l/v1/a/b/c/d", "/l/v1/!!/!!/!!", "/l/v2/a/b/c", "/l/v1/aGk/aGk/aGk"]
        {
            assert!(parse(path).is_err(), "{path}");
        }
    }
}
