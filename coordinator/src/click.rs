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
use picket_common::actions::mail::UrlMatch;
use picket_common::links;
use picket_common::url_blocklist::{self, BlockedUrl};
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

/// The blocklist as the listener checks it: each mail host's own
/// ([`picket_common::url_blocklist::Blocklist`]).
#[derive(Debug, Default)]
pub struct Blocklist {
    hosts: HashMap<Uuid, url_blocklist::Blocklist>,
    len: usize,
}

impl Blocklist {
    pub fn new(entries: Vec<UrlBlock>) -> Self {
        let len = entries.len();
        let mut by_host: HashMap<Uuid, Vec<BlockedUrl>> = HashMap::new();
        for e in &entries {
            match e.blocked() {
                Some(b) => by_host.entry(e.device_id).or_default().push(b),
                None => tracing::warn!(id = %e.id, kind = %e.match_kind, "blocklist entry of an unknown kind ignored"),
            }
        }
        let hosts = by_host.into_iter().map(|(d, list)| (d, url_blocklist::Blocklist::new(list))).collect();
        Self { hosts, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry that blocks `url` in mail host `device`'s links at `now`
    /// (Unix ms), if one does.
    pub fn check(&self, device: Uuid, url: &str, now: i64) -> Option<&BlockedUrl> {
        self.hosts.get(&device)?.check(url, now)
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

/// Clicks waiting to be written; past this, a click waits for room (up to
/// [`LOG_WAIT`], then it is answered unrecorded, and the log says so).
const LOG_DEPTH: usize = 65_536;
/// How long a click waits for room in a full click log.
const LOG_WAIT: Duration = Duration::from_secs(2);

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
            n = rx.recv_many(&mut batch, 5000) => n,
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
        // The blocked ones are alerts too, written with the batch: a burst
        // of clicks is one write, not one per click.
        for (device, report) in blocked_click_alerts(&batch) {
            if let Err(error) = store.record_alert_report(device, &report).await {
                tracing::error!(%error, %device, "cannot record the alert for blocked clicks");
            }
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
    // A full log slows the answers down rather than losing clicks; only a
    // log stuck for longer than LOG_WAIT loses this one (and says so).
    if svc.log.send_timeout(record, LOG_WAIT).await.is_err() {
        tracing::error!(url = %link.url, "click log full: this click is not recorded");
    }
    match blocked {
        Some(block) => {
            tracing::warn!(url = %link.url, recipient = %link.recipient, block = %block.id, "blocked link clicked");
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

/// "A user clicked a blocked URL": alerts of the mail hosts, one per URL
/// (its SHA-256 stands for the file's), each recipient a path of it; one
/// report per mail host for a batch of logged clicks.
fn blocked_click_alerts(clicks: &[Click]) -> Vec<(Uuid, picket_common::detection::AlertReport)> {
    use picket_common::detection::{AlertReport, Detection, Severity};
    let mut reports: HashMap<Uuid, AlertReport> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for c in clicks.iter().filter(|c| c.block_id.is_some()) {
        let path = format!("{CLICK_PATH}{} {}", c.recipient, c.url);
        if !seen.insert((c.device_id, path.clone())) {
            continue;
        }
        let report = reports.entry(c.device_id).or_insert_with(|| AlertReport {
            report_id: Uuid::new_v4(),
            source: "click".into(),
            observed_ms: c.at,
            detections: Vec::new(),
        });
        report.detections.push(Detection {
            path,
            sha256: picket_common::url_blocklist::alert_sha256(&c.url),
            size: 0,
            rule: BLOCKED_CLICK_RULE.into(),
            namespace: "picket".into(),
            severity: Severity::Malicious,
        });
    }
    reports.into_iter().collect()
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

fn block_page(url: &str, block: &BlockedUrl) -> Response {
    let why = match block.match_type {
        UrlMatch::Domain => format!("the site {} is blocked", block.value),
        UrlMatch::Prefix => format!("links starting with {} are blocked", block.value),
        UrlMatch::Exact => "this link is blocked".to_string(),
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
    fn each_hosts_blocks_cover_its_own_links_only() {
        let list = Blocklist::new(vec![
            block("domain", "bad.example", None),
            block("prefix", "https://cdn.example/payload/", None),
            block("wildcard", "*", None),
        ]);
        assert_eq!(list.len(), 3);
        let hit = list.check(HOST, "https://a.bad.example/x", 0).expect("blocked");
        assert_eq!((hit.match_type, hit.value.as_str()), (UrlMatch::Domain, "bad.example"));
        assert!(list.check(HOST, "https://cdn.example/payload/x.exe", 0).is_some());
        // An entry of a kind this build does not know blocks nothing.
        assert!(list.check(HOST, "https://good.example/", 0).is_none());
        // Another mail host's links are not covered.
        assert!(list.check(Uuid::from_u128(2), "http://bad.example/", 0).is_none());
    }

    #[test]
    fn a_batch_of_clicks_makes_one_alert_report_per_host_with_each_blocked_recipient_once() {
        let click = |device, recipient: &str, url: &str, blocked: bool| Click {
            id: Uuid::new_v4(),
            at: 1,
            device_id: device,
            recipient: recipient.into(),
            message_id: "m@x".into(),
            url: url.into(),
            verdict: if blocked { "blocked" } else { "allowed" }.into(),
            block_id: blocked.then(Uuid::new_v4),
            client: "127.0.0.1".into(),
        };
        let other = Uuid::from_u128(2);
        let batch = [
            click(HOST, "alice", "https://evil.example/", true),
            click(HOST, "alice", "https://evil.example/", true),
            click(HOST, "bob", "https://evil.example/", true),
            click(HOST, "carol", "https://fine.example/", false),
            click(other, "dave", "https://evil.example/", true),
        ];
        let mut reports = blocked_click_alerts(&batch);
        reports.sort_by_key(|(d, _)| *d);
        let paths: Vec<Vec<&str>> =
            reports.iter().map(|(_, r)| r.detections.iter().map(|d| d.path.as_str()).collect()).collect();
        assert_eq!(reports.iter().map(|(d, _)| *d).collect::<Vec<_>>(), [HOST, other]);
        assert_eq!(
            paths,
            [
                vec!["click:alice https://evil.example/", "click:bob https://evil.example/"],
                vec!["click:dave https://evil.example/"]
            ]
        );
        assert!(reports.iter().flat_map(|(_, r)| &r.detections).all(|d| d.rule == BLOCKED_CLICK_RULE));
    }
}
