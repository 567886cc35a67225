//! Console sign-in: the session cookie, its timeouts, the CSRF token that
//! goes with it, and login throttling.
//!
//! The cookie holds 256 random bits; the database keeps only their
//! SHA-256, so a copy of the database signs nobody in. Every
//! state-changing console request must carry the session's CSRF token
//! (form field `csrf_token` or header `X-CSRF-Token`); the sign-in form,
//! before any session, uses a second cookie with the same value as its
//! form field (double submit).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

use crate::api::Caller;
use crate::clock::now_ms;
use crate::store::{hash_secret, Role, Store, StoreError, TokenKind};

/// The session cookie. `__Host-`: the browser keeps it only if it is
/// Secure, for this host alone, for every path.
pub const SESSION_COOKIE: &str = "__Host-picket_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "__Host-picket_login";

/// Sent by the console's script when it refreshes a page's live parts.
pub const POLL_HEADER: &str = "x-picket-poll";

/// A signed-in person, as the console's handlers see them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub user: String,
    pub role: Role,
    pub csrf_token: String,
    /// The SHA-256 of the cookie (the session's key).
    pub(crate) id_hash: String,
}

impl Operator {
    /// The same caller the API would see for this person: the role and
    /// identity come from the user record, never from the request.
    pub fn caller(&self) -> Caller {
        Caller {
            name: self.user.clone(),
            role: self.role,
            token_id: "console".into(),
            identity: format!("user:{}", self.user),
            kind: TokenKind::User,
        }
    }

    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// Why there is no signed-in person.
#[derive(Debug)]
pub enum NoSession {
    /// No cookie, or one the database does not know.
    Missing,
    /// It existed, but ran past a timeout and has now ended.
    Expired,
    Store(StoreError),
}

/// A random 256-bit value as hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for `name`: HttpOnly, Secure, SameSite=Strict, Path=/;
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict{age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Equal without saying where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Session timeouts, from `[console]`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

/// The person whose session cookie `headers` carries, if the session is
/// live; one that ran past a timeout is ended here.
pub async fn operator(store: &Store, timeouts: Timeouts, headers: &HeaderMap) -> Result<Operator, NoSession> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else { return Err(NoSession::Missing) };
    let id_hash = hash_secret(secret);
    let Some(session) = store.session(&id_hash).await.map_err(NoSession::Store)? else {
        return Err(NoSession::Missing);
    };
    let now = now_ms();
    if now - session.last_seen_at > timeouts.idle_ms || now - session.created_at > timeouts.absolute_ms {
        store.end_session(&id_hash).await.map_err(NoSession::Store)?;
        tracing::info!(user = %session.user, "console session timed out");
        return Err(NoSession::Expired);
    }
    // One write a minute at most per session keeps the idle clock (more
    // often when the idle timeout itself is shorter). A page's own live
    // updates (header `X-Picket-Poll`) are not activity: a console left
    // open still times out.
    let polling = headers.contains_key(POLL_HEADER);
    if !polling && now - session.last_seen_at > (timeouts.idle_ms / 2).min(60_000) {
        store.touch_session(&id_hash).await.map_err(NoSession::Store)?;
    }
    Ok(Operator { user: session.user, role: session.role, csrf_token: session.csrf_token, id_hash })
}

/// Failed sign-ins in the last minute, per user name and per address.
/// Past [`Throttle::LIMIT`] either way, sign-in is refused without looking
/// at the password until the oldest failure is a minute old.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub const LIMIT: usize = 5;
    const WINDOW: Duration = Duration::from_secs(60);
    /// Keys kept at most; past it, those with no recent failure go first.
    const MAX_KEYS: usize = 100_000;

    fn keys(user: &str, address: IpAddr) -> [String; 2] {
        [format!("user:{user}"), format!("addr:{address}")]
    }

    /// How long to wait before another try, if one must.
    pub fn wait(&self, user: &str, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for key in Self::keys(user, address) {
            let Some(times) = failures.get_mut(&key) else { continue };
            while times.front().is_some_and(|t| now.duration_since(*t) >= Self::WINDOW) {
                times.pop_front();
            }
            if times.len() >= Self::LIMIT {
                let oldest = times[times.len() - Self::LIMIT];
                wait = wait.max(Some(Self::WINDOW.saturating_sub(now.duration_since(oldest))));
            }
        }
        wait
    }

    pub fn failed(&self, user: &str, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= Self::MAX_KEYS {
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < Self::WINDOW));
        }
        for key in Self::keys(user, address) {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            if times.len() > Self::LIMIT * 4 {
                times.pop_front();
            }
        }
    }

    /// A successful sign-in clears the user's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_by_user_or_address_make_the_next_wait() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..4 {
            t.failed("alice", a);
        }
        assert_eq!(t.wait("alice", a), None);
        t.failed("alice", b);
        // Five for alice across addresses.
        assert!(t.wait("alice", a).is_some_and(|w| w > Duration::from_secs(50)));
        assert!(t.wait("bob", b).is_none(), "b has one failure");
        // Four from a plus one more under another name: a waits.
        t.failed("carol", a);
        assert!(t.wait("dave", a).is_some());
        t.succeeded("alice");
        assert!(t.wait("alice", b).is_none());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("x__Host-picket_session=no; __Host-picket_session=yes"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("yes"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
