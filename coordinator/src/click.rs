//! Time-of-click protection: the click listener wrapped links lead to
//! (DESIGN.md "Email").
//!
//! A mail host rewrites each link of an inbound message at delivery to
//! `CLICK-URL/l/v1/<url>/<ref>/<sig>` ([`picket_common::links`]), signed with
//! its link key, which the coordinator derives from its click secret and
//! the host's device id and sends the host over its session. A click is
//! checked here, at click time, against the blocklist: allowed → 302 to
//! the original; blocked → a page saying why, no way through. A link that
//! does not verify gets a 400 page. Each click (not the refused ones) is
//! logged: time, mail host, recipient, Message-ID, URL, verdict. Clients
//! are rate-limited per address. Nothing else happens on a GET.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use picket_common::links::{self, host};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::store::{Click, Store, UrlBlock};

/// The coordinator's click secret: each mail host's link key is derived
/// from it. Kept in `click.key` in the data dir (0600), made at first start.
pub struct ClickSecret([u8; 32]);

impl std::fmt::Debug for ClickSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClickSecret(..)")
    }
}

impl ClickSecret {
    /// Read `data_dir/click.key`, or make it.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("click.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                bytes.map(Self).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: not 32 bytes in hex; remove it to make a new one (links wrapped so far stop working)",
                            path.display()
                        ),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // rand's default generator is a CSPRNG seeded from the OS.
                let secret: [u8; 32] = rand::random();
                crate::fsutil::write_file_0600(&path, format!("{}\n", hex::encode(secret)).as_bytes())?;
                tracing::info!(path = %path.display(), "made the click secret");
                Ok(Self(secret))
            }
            Err(e) => Err(e),
        }
    }

    /// The link key of one mail host.
    pub fn device_key(&self, device: Uuid) -> [u8; 32] {
        links::device_key(&self.0, device)
    }
}

/// What the gateway needs to hand mail hosts their link keys.
#[derive(Debug)]
pub struct Links {
    /// Base of wrapped links (no trailing slash).
    pub url: String,
    pub secret: ClickSecret,
}

/// The blocklist as the listener checks it: per mail host, exact links,
/// domains (and their subdomains), and prefixes, each a hash lookup.
#[derive(Debug, Default)]
pub struct Blocklist {
    entries: Vec<UrlBlock>,
    exact: HashMap<(Uuid, String), usize>,
    domains: HashMap<(Uuid, String), usize>,
    prefixes: HashMap<(Uuid, String), usize>,
    /// The lengths of the prefixes, so a check looks up only those.
    prefix_lengths: Vec<usize>,
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

impl Blocklist {
    pub fn new(entries: Vec<UrlBlock>) -> Self {
        let mut list = Self { entries, ..Self::default() };
        for (i, e) in list.entries.iter().enumerate() {
            let d = e.device_id;
            match e.match_kind.as_str() {
                "exact" => {
                    list.exact.insert((d, normalize(&e.value)), i);
                }
                "domain" => {
                    list.domains.insert((d, e.value.trim_end_matches('.').to_ascii_lowercase()), i);
                }
                "prefix" => {
                    let p = normalize(&e.value);
                    list.prefix_lengths.push(p.len());
                    list.prefixes.insert((d, p), i);
                }
                other => tracing::warn!(id = %e.id, kind = other, "blocklist entry of an unknown kind ignored"),
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

    /// The entry that blocks `url` in mail host `device`'s links at `now`
    /// (Unix ms), if one does.
    pub fn check(&self, device: Uuid, url: &str, now: i64) -> Option<&UrlBlock> {
        let live = |i: &usize| self.entries.get(*i).filter(|e| e.expires_at.is_none_or(|t| t > now));
        let mut key = (device, normalize(url));
        if let Some(e) = self.exact.get(&key).and_then(live) {
            return Some(e);
        }
        let normal = std::mem::replace(&mut key.1, host(url));
        loop {
            if let Some(e) = self.domains.get(&key).and_then(live) {
                return Some(e);
            }
            match key.1.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => key.1 = parent.to_string(),
                _ => break,
            }
        }
        for &n in &self.prefix_lengths {
            let Some(head) = normal.get(..n) else { break };
            key.1 = head.to_string();
            if let Some(e) = self.prefixes.get(&key).and_then(live) {
                return Some(e);
            }
        }
        None
    }
}

/// The click listener's state.
pub struct ClickService {
    store: Store,
    links: Arc<Links>,
    blocklist: RwLock<Arc<Blocklist>>,
    log: mpsc::Sender<Click>,
    limiter: Mutex<HashMap<IpAddr, (i64, u32)>>,
    max_per_minute: u32,
}

/// Clicks waiting to be written; past this, clicks are still answered and
/// the log says how many went unrecorded.
const LOG_DEPTH: usize = 65_536;

impl ClickService {
    /// The service, and the receiving end of its click log (for [`run_log`]).
    pub async fn new(
        store: Store,
        links: Arc<Links>,
        max_per_minute: u32,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Click>), crate::store::StoreError> {
        let blocklist = Blocklist::new(store.url_blocks().await?);
        let (log, rx) = mpsc::channel(LOG_DEPTH);
        let me = Self {
            store,
            links,
            blocklist: RwLock::new(Arc::new(blocklist)),
            log,
            limiter: Mutex::new(HashMap::new()),
            max_per_minute,
        };
        Ok((Arc::new(me), rx))
    }

    /// Read the blocklist again (after a change, and periodically).
    pub async fn reload(&self) -> Result<usize, crate::store::StoreError> {
        let list = Blocklist::new(self.store.url_blocks().await?);
        let n = list.len();
        *self.blocklist.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
        Ok(n)
    }

    fn blocklist(&self) -> Arc<Blocklist> {
        self.blocklist.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `ip` may click once more this minute.
    fn admit(&self, ip: IpAddr, now: i64) -> bool {
        let minute = now / 60_000;
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if limiter.len() > 100_000 {
            limiter.retain(|_, (m, _)| *m == minute);
        }
        let slot = limiter.entry(ip).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        slot.1 <= self.max_per_minute
    }

    /// Re-read the blocklist every `every` (the action center re-reads it
    /// after each block it makes or lifts; this catches other
    /// coordinators'). Expiry needs no reload: it is checked at click time.
    pub async fn refresh(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "cannot re-read the URL blocklist; the one loaded stays");
            }
        }
    }
}

/// Write logged clicks in batches until `shutdown` (then what is queued).
pub async fn run_log(store: Store, mut rx: mpsc::Receiver<Click>, shutdown: CancellationToken) {
    let mut batch = Vec::new();
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut batch, 1000) => n,
            _ = shutdown.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, LOG_DEPTH).await
            }
        };
        if got == 0 {
            return;
        }
        if let Err(error) = store.insert_clicks(&batch).await {
            tracing::error!(%error, clicks = batch.len(), "cannot record clicks");
        }
        batch.clear();
    }
}

pub fn router(service: Arc<ClickService>) -> Router {
    Router::new()
        .route("/l/v1/{*rest}", axum::routing::get(click))
        .fallback(|| async {
            page(StatusCode::NOT_FOUND, "Not found", "This is Picket's link checker; there is nothing else here.")
        })
        .with_state(service)
}

async fn click(State(svc): State<Arc<ClickService>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, uri: Uri) -> Response {
    let now = now_ms();
    if !svc.admit(peer.ip(), now) {
        tracing::warn!(client = %peer.ip(), "clicks over the per-minute limit refused");
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many clicks",
            "Too many links were opened from this address in the last minute. Wait a minute and try again.",
        );
    }
    let link = match links::parse(uri.path()) {
        Ok(unverified) => {
            let key = svc.links.secret.device_key(unverified.device());
            unverified.verify(&key)
        }
        Err(e) => Err(e),
    };
    let link = match link {
        Ok(l) => l,
        Err(error) => {
            tracing::warn!(client = %peer.ip(), %error, "a click on a link that does not verify was refused");
            return page(
                StatusCode::BAD_REQUEST,
                "This link is not valid",
                "The link was altered or is not one Picket made. It leads nowhere.",
            );
        }
    };
    let blocked = svc.blocklist().check(link.device, &link.url, now).cloned();
    let record = Click {
        id: Uuid::new_v4(),
        at: now,
        device_id: link.device,
        recipient: link.recipient.clone(),
        message_id: link.message_id.clone(),
        url: link.url.clone(),
        verdict: if blocked.is_some() { "blocked" } else { "allowed" }.into(),
        block_id: blocked.as_ref().map(|b| b.id),
        client: peer.ip().to_string(),
    };
    if svc.log.try_send(record).is_err() {
        tracing::error!(url = %link.url, "click log full: this click is not recorded");
    }
    match blocked {
        Some(block) => {
            tracing::warn!(url = %link.url, recipient = %link.recipient, block = %block.id, "blocked link clicked");
            let store = svc.store.clone();
            let (device, report) = (link.device, blocked_click_alert(&link, now));
            tokio::spawn(async move {
                if let Err(error) = store.record_alert_report(device, &report).await {
                    tracing::error!(%error, "cannot record the alert for a blocked click");
                }
            });
            block_page(&link.url, &block)
        }
        None => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, &link.url)
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::REFERRER_POLICY, "no-referrer")
            .body(axum::body::Body::empty())
            .unwrap_or_else(|_| {
                page(StatusCode::BAD_REQUEST, "This link is not valid", "The link cannot be followed.")
            }),
    }
}

/// The rule of the alert a click on a blocked link raises.
pub const BLOCKED_CLICK_RULE: &str = "blocked_url_clicked";
/// Alert paths of blocked clicks: `click:<recipient> <url>`.
pub const CLICK_PATH: &str = "click:";

/// "A user clicked a blocked URL": an alert of the mail host, one per URL
/// (its SHA-256 stands for the file's), each recipient a path of it.
fn blocked_click_alert(link: &links::Link, now: i64) -> picket_common::detection::AlertReport {
    use sha2::Digest;
    picket_common::detection::AlertReport {
        report_id: Uuid::new_v4(),
        source: "click".into(),
        observed_ms: now,
        detections: vec![picket_common::detection::Detection {
            path: format!("{CLICK_PATH}{} {}", link.recipient, link.url),
            sha256: hex::encode(sha2::Sha256::digest(link.url.as_bytes())),
            size: 0,
            rule: BLOCKED_CLICK_RULE.into(),
            namespace: "picket".into(),
            severity: picket_common::detection::Severity::Malicious,
        }],
    }
}

fn shell(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " — Picket" }
                style { "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}code{word-break:break-all;background:#f3f3f3;padding:.1rem .3rem}" }
            }
            body { (body) }
        }
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = shell(title, html! { h1 { (title) } p { (text) } });
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn block_page(url: &str, block: &UrlBlock) -> Response {
    let why = match block.match_kind.as_str() {
        "domain" => format!("the site {} is blocked", block.value),
        "prefix" => format!("links starting with {} are blocked", block.value),
        _ => "this link is blocked".to_string(),
    };
    let body = shell(
        "Blocked",
        html! {
            h1 { "This link is blocked" }
            p { "Your organisation's security team blocked it: " (why) "." }
            p { "The link was: " code { (url) } }
            @if !block.comment.is_empty() { p { "Reason given: " (block.comment) } }
            p { "You were not taken there. If you think this is a mistake, contact your security team and quote this: " code { (block.id) } }
        },
    );
    (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Uuid = Uuid::from_u128(1);

    fn block(kind: &str, value: &str, expires_at: Option<i64>) -> UrlBlock {
        UrlBlock {
            id: Uuid::new_v4(),
            device_id: HOST,
            match_kind: kind.into(),
            value: value.into(),
            comment: String::new(),
            created_by: "t".into(),
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn exact_domain_and_prefix_entries_match_what_they_name_only() {
        let list = Blocklist::new(vec![
            block("exact", "https://Evil.example/login?a=1", None),
            block("domain", "bad.example", None),
            block("prefix", "https://cdn.example/payload/", None),
            block("domain", "gone.example", Some(1_000)),
        ]);
        let hit = |u: &str| list.check(HOST, u, 2_000).map(|b| b.match_kind.clone());
        assert_eq!(hit("https://evil.example/login?a=1").as_deref(), Some("exact"));
        assert_eq!(hit("HTTPS://EVIL.EXAMPLE/login?a=1").as_deref(), Some("exact"));
        assert_eq!(hit("https://evil.example/login?a=2"), None);
        assert_eq!(hit("https://evil.example/LOGIN?a=1"), None);
        assert_eq!(hit("http://bad.example").as_deref(), Some("domain"));
        assert_eq!(hit("https://a.b.BAD.example:8443/x").as_deref(), Some("domain"));
        assert_eq!(hit("https://user@bad.example./x").as_deref(), Some("domain"));
        assert_eq!(hit("https://notbad.example/"), None);
        assert_eq!(hit("https://cdn.example/payload/x.exe").as_deref(), Some("prefix"));
        assert_eq!(hit("https://cdn.example/pay"), None);
        // Expired entries no longer block.
        assert_eq!(hit("https://gone.example/"), None);
        assert_eq!(list.check(HOST, "https://gone.example/", 500).map(|b| b.value.as_str()), Some("gone.example"));
        // Another mail host's links are not covered.
        assert!(list.check(Uuid::from_u128(2), "http://bad.example/", 0).is_none());
    }
}
