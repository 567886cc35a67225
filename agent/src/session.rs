//! `picket-agent run`: hold the mutual-TLS session to the coordinator.
//!
//! One task drives the session: it sends `Hello`, waits for `Welcome`, then
//! sends heartbeats and handles what arrives; a second task only reads
//! frames and hands them over a channel, so a partly read frame is never
//! dropped by a `select!`. When the session ends for any reason other than
//! shutdown the agent waits an exponentially growing, jittered delay (1 s up
//! to 60 s) and reconnects; a refusal that only an operator can lift
//! (revoked, unknown device, version mismatch) goes straight to the cap.
//! At two thirds of its certificate's life the session renews it
//! ([`crate::renew`]) and reconnects at once with the new one.

use std::sync::Arc;
use std::time::Duration;

use picket_common::io::{read_frame, write_frame, FrameError};
use picket_common::limits::{MAX_BACKOFF, PROTOCOL_VERSION};
use picket_common::proto::{AgentMsg, CoordMsg, Hello, MailHostFacts, RefusalReason};
use rustls::AlertDescription;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::actions::Executor;
use crate::alerts::AlertQueue;
use crate::clock::now_rfc3339;
use crate::config::AgentConfig;
use crate::content::Content;
use crate::journal::{Journal, JournalError};
use crate::platform::Platform;
use crate::state::{StateDir, StateError, Status};
use crate::tls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("TLS setup from the stored identity failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("offboarding cleanup failed: {0}")]
    Offboard(String),
    #[error("cannot open the alert queue: {0}")]
    Alerts(std::io::Error),
    #[error("cannot load detection content: {0}")]
    Content(String),
    #[error(transparent)]
    Vault(#[from] crate::quarantine::vault::VaultError),
    #[error("{0}")]
    Mail(String),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("coordinator refused the session: {reason} ({message})")]
    Refused { reason: RefusalReason, message: String },
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Protocol(String),
}

impl SessionError {
    /// Errors no retry can fix without an operator.
    fn is_final(&self) -> bool {
        match self {
            Self::Refused { reason, .. } => reason.is_final(),
            Self::Handshake(e) => matches!(
                e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::AlertReceived(
                    AlertDescription::CertificateRevoked
                        | AlertDescription::CertificateUnknown
                        | AlertDescription::BadCertificate
                        | AlertDescription::UnknownCA
                        | AlertDescription::CertificateExpired
                ))
            ),
            _ => false,
        }
    }
}

enum Ended {
    Shutdown,
    Closed(&'static str),
    /// The coordinator acknowledged this device's offboarding.
    Offboarded,
    /// The certificate was renewed: reconnect at once with the new one.
    Renewed,
}

/// Exponential backoff with jitter: each delay is uniformly drawn from
/// [d/2, d] where d doubles from 1 s up to the cap.
pub struct Backoff {
    attempt: u32,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Self { attempt: 0, cap }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn to_cap(&mut self) {
        self.attempt = 31;
    }

    pub fn next_delay(&mut self) -> Duration {
        let full = Duration::from_secs(1).saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1).min(31);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Run the agent with the native platform until `shutdown`.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(config, crate::platform::native(), shutdown).await
}

/// Run the agent on `platform`: recover the journal, then hold the session.
pub async fn run_with(
    config: AgentConfig,
    platform: Arc<dyn Platform>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let state = StateDir::new(&config.state_dir);
    let identity = state.identity()?;
    let journal = Journal::open(state.path())?;
    let (out_tx, mut out_rx) = mpsc::channel(OUT_DEPTH);
    let coordinator_addr = if config.coordinator.is_empty() {
        identity.enrollment.coordinator.clone()
    } else {
        config.coordinator.clone()
    };
    // Isolation survives restarts: re-apply it before connecting.
    let reapply = {
        let (platform, dir) = (platform.clone(), state.path().to_path_buf());
        tokio::task::spawn_blocking(move || crate::actions::isolate::reapply(platform.as_ref(), &dir)).await
    };
    match reapply {
        Ok(Ok(true)) => tracing::warn!("this device is isolated: only the coordinator is reachable"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::error!(%error, "COULD NOT RE-APPLY NETWORK ISOLATION"),
        Err(error) => tracing::error!(%error, "COULD NOT RE-APPLY NETWORK ISOLATION"),
    }
    let content = {
        let (dir, rules) = (state.path().to_path_buf(), config.rule_dirs.clone());
        tokio::task::spawn_blocking(move || Arc::new(Content::open(&dir, rules)))
            .await
            .map_err(|e| RunError::Content(e.to_string()))?
    };
    let alerts = Arc::new(AlertQueue::open(state.path(), out_tx.clone()).map_err(RunError::Alerts)?);
    let realtime_stop = shutdown.child_token();
    let _realtime = crate::realtime::spawn(
        config.realtime.clone(),
        content.clone(),
        alerts.clone(),
        state.path().to_path_buf(),
        realtime_stop.clone(),
    );
    let _stop_realtime = realtime_stop.drop_guard();
    // Code restriction survives restarts too.
    let restricted = {
        let (platform, dir, alerts) = (platform.clone(), state.path().to_path_buf(), alerts.clone());
        tokio::task::spawn_blocking(move || crate::actions::restrict_code::reapply(platform.as_ref(), &dir, alerts))
            .await
    };
    match restricted {
        Ok(Ok(true)) => tracing::warn!("code execution is restricted on this device"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::error!(%error, "COULD NOT RE-APPLY CODE RESTRICTION"),
        Err(error) => tracing::error!(%error, "COULD NOT RE-APPLY CODE RESTRICTION"),
    }
    let uploader = Arc::new(crate::upload::Uploader::new(out_tx.clone()));
    let vault = Arc::new(crate::quarantine::Vault::open(state.path())?);
    crate::quarantine::recover(&vault);
    let mail = match config.mail.clone() {
        Some(mail) => Some(Arc::new(crate::mail::MailHost::open(mail, state.path()).map_err(RunError::Mail)?)),
        None => None,
    };
    let context = crate::actions::Context {
        state_dir: state.path().to_path_buf(),
        coordinator: coordinator_addr,
        content: content.clone(),
        alerts: alerts.clone(),
        uploader: uploader.clone(),
        vault,
        persistence_root: config.persistence_root.clone(),
        restrict_scope: config.restrict_scope.clone(),
        evidence_search_paths: config.evidence_search_paths.clone(),
        device_id: identity.enrollment.device_id,
        mail,
    };
    let executor = Executor::new(journal, platform, context, out_tx.clone());
    executor.recover().await?;
    let device_id = identity.enrollment.device_id;
    let coordinator = if config.coordinator.is_empty() {
        identity.enrollment.coordinator.clone()
    } else {
        config.coordinator.clone()
    };
    let mut status = Status {
        pid: std::process::id(),
        device_id,
        coordinator: coordinator.clone(),
        connected: false,
        last_contact: None,
        last_error: None,
    };
    save_status(&state, &status);
    let mut backoff = Backoff::new(MAX_BACKOFF);
    tracing::info!(device = %device_id, %coordinator, "agent starting");
    loop {
        // The identity is read for every connection: a renewal replaces it.
        let identity = state.identity()?;
        let cert = identity.cert.clone();
        let ca = identity.ca.clone();
        let connector = TlsConnector::from(Arc::new(tls::session_config(identity.ca, identity.cert, identity.key)?));
        let span = tracing::info_span!("session", %coordinator);
        let mut link = Link {
            state: &state,
            status: &mut status,
            executor: &executor,
            out: &mut out_rx,
            out_tx: &out_tx,
            content: &content,
            alerts: &alerts,
            uploader: &uploader,
            cert: &cert,
            ca: &ca,
            device_id,
        };
        let result = connect_and_serve(&connector, &coordinator, &config, &mut backoff, &shutdown, &mut link)
            .instrument(span)
            .await;
        status.connected = false;
        match &result {
            Ok(Ended::Shutdown) => {
                save_status(&state, &status);
                tracing::info!("agent stopped");
                return Ok(());
            }
            Ok(Ended::Offboarded) => {
                tracing::warn!("offboarded: removing this device's identity, journal and state");
                let st = state.clone();
                tokio::task::spawn_blocking(move || crate::offboard::wipe(&st))
                    .await
                    .map_err(|e| RunError::Offboard(e.to_string()))?
                    .map_err(|e| RunError::Offboard(e.to_string()))?;
                return Ok(());
            }
            Ok(Ended::Closed(why)) => {
                tracing::warn!(why, "session ended");
                status.last_error = Some(why.to_string());
            }
            Ok(Ended::Renewed) => {
                tracing::info!("reconnecting with the renewed certificate");
                save_status(&state, &status);
                continue;
            }
            Err(error) => {
                if error.is_final() {
                    tracing::error!(%error, "the coordinator will not accept this device until an operator acts; retrying slowly");
                    backoff.to_cap();
                } else {
                    tracing::warn!(%error, "session failed");
                }
                status.last_error = Some(error.to_string());
            }
        }
        save_status(&state, &status);
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting after a delay");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect_and_serve(
    connector: &TlsConnector,
    coordinator: &str,
    config: &AgentConfig,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    link: &mut Link<'_>,
) -> Result<Ended, SessionError> {
    let max = config.max_frame_bytes;
    let tcp = tokio::select! {
        _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
        tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(coordinator)) => tcp
            .map_err(|_| SessionError::Connect("timed out".into()))?
            .map_err(|e| SessionError::Connect(e.to_string()))?,
    };
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(tls::server_name(), tcp))
        .await
        .map_err(|_| SessionError::Connect("TLS handshake timed out".into()))?
        .map_err(SessionError::Handshake)?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let hello = AgentMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: crate::sysinfo::hostname(),
        os: crate::sysinfo::os(),
        kernel: crate::sysinfo::kernel(),
        capabilities: {
            let mut c = link.executor.capabilities();
            if let Some(mail) = &config.mail {
                c.push(picket_common::url_blocklist::CAPABILITY.to_string());
                if mail.link_key_file.is_some() {
                    c.push(picket_common::links::CAPABILITY.to_string());
                }
            }
            c
        },
    });
    write_frame(&mut wr, &hello, max).await?;
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, read_frame::<_, CoordMsg>(&mut rd, max)).await {
        Err(_) => return Err(SessionError::Protocol("no Welcome from the coordinator".into())),
        Ok(frame) => match frame? {
            Some(CoordMsg::Welcome(w)) => w,
            Some(CoordMsg::Refused(r)) => return Err(SessionError::Refused { reason: r.reason, message: r.message }),
            Some(other) => return Err(SessionError::Protocol(format!("expected Welcome, got {other:?}"))),
            None => return Err(SessionError::Protocol("connection closed before Welcome".into())),
        },
    };
    backoff.reset();
    let heartbeat = config.heartbeat().min(Duration::from_secs(u64::from(welcome.heartbeat_secs.max(1))));
    tracing::info!(device = %welcome.device_id, heartbeat_secs = heartbeat.as_secs(), "connected");
    link.status.connected = true;
    link.status.last_contact = Some(now_rfc3339());
    link.status.last_error = None;
    save_status(link.state, link.status);

    let (tx, mut rx) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame::<_, CoordMsg>(&mut rd, max).await;
            let done = !matches!(frame, Ok(Some(_)));
            if tx.send(frame).await.is_err() || done {
                break;
            }
        }
    });
    let _abort_reader = AbortOnDrop(reader);
    write_frame(&mut wr, &AgentMsg::ContentState(link.content.state()), max).await?;
    if let Some(mail) = &config.mail {
        let facts = MailHostFacts { internal_domains: mail.internal_domains.clone() };
        write_frame(&mut wr, &AgentMsg::MailHost(facts), max).await?;
    }
    link.executor.replay_outbox().await;
    link.alerts.resend(Duration::ZERO);

    let mut tick = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut last_frame = Instant::now();
    // Certificate renewal: when due, and the key waiting for its certificate.
    let mut renew_at = match crate::renew::due(link.cert) {
        Some(at) => Instant::now() + at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO),
        None => Instant::now() + Duration::from_secs(24 * 3600),
    };
    let mut pending: Option<crate::renew::Pending> = None;
    loop {
        let idle_deadline = last_frame + heartbeat * 3;
        tokio::select! {
            _ = tokio::time::sleep_until(renew_at) => {
                renew_at = Instant::now() + crate::renew::ANSWER_WAIT;
                match crate::renew::start(&crate::sysinfo::hostname()) {
                    Ok(p) => {
                        tracing::info!("certificate due for renewal; asking the coordinator");
                        write_frame(&mut wr, &AgentMsg::RenewCertificate { csr_der: p.csr_der.clone() }, max).await?;
                        pending = Some(p);
                    }
                    Err(error) => tracing::warn!(%error, "cannot start a certificate renewal; trying again later"),
                }
            }
            _ = shutdown.cancelled() => {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
                return Ok(Ended::Shutdown);
            }
            _ = tick.tick() => {
                seq += 1;
                write_frame(&mut wr, &AgentMsg::Heartbeat { seq }, max).await?;
                link.alerts.resend(crate::alerts::RESEND_AFTER);
            }
            _ = tokio::time::sleep_until(idle_deadline) => return Ok(Ended::Closed("no frame from the coordinator for three heartbeat intervals")),
            Some(msg) = link.out.recv() => write_frame(&mut wr, &msg, max).await?,
            frame = rx.recv() => {
                let Some(frame) = frame else { return Ok(Ended::Closed("connection reader stopped")) };
                last_frame = Instant::now();
                match frame? {
                    None => return Ok(Ended::Closed("coordinator closed the connection")),
                    Some(CoordMsg::HeartbeatAck { .. }) => {
                        link.status.last_contact = Some(now_rfc3339());
                        save_status(link.state, link.status);
                    }
                    Some(CoordMsg::Refused(r)) => return Err(SessionError::Refused { reason: r.reason, message: r.message }),
                    Some(CoordMsg::Action(req)) => link.executor.submit(req).await,
                    Some(CoordMsg::Cancel { action_id }) => link.executor.cancel(action_id).await,
                    Some(CoordMsg::ResultAck { action_id }) => {
                        link.executor.acked(action_id).await;
                        if link.executor.is_offboarded() {
                            return Ok(Ended::Offboarded);
                        }
                    }
                    Some(CoordMsg::AlertAck { report_id }) => link.alerts.acked(report_id),
                    Some(CoordMsg::UploadAck(ack)) => link.uploader.deliver(ack),
                    Some(CoordMsg::CertificateRenewed { certificate_der }) => {
                        let Some(p) = pending.take() else {
                            tracing::warn!("a renewed certificate nobody asked for was ignored");
                            continue;
                        };
                        let (ca, device, state) = (link.ca.clone(), link.device_id, link.state.clone());
                        let stored = tokio::task::spawn_blocking(move || {
                            crate::renew::finish(p, certificate_der, &ca, device, &state)
                        })
                        .await;
                        match stored {
                            Ok(Ok(())) => {
                                tracing::info!("certificate renewed and stored");
                                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
                                return Ok(Ended::Renewed);
                            }
                            Ok(Err(error)) => tracing::error!(%error, "renewed certificate refused; keeping the current one"),
                            Err(error) => tracing::error!(%error, "renewal task failed; keeping the current certificate"),
                        }
                    }
                    Some(CoordMsg::Rules(bundle)) => {
                        tracing::info!(version = %bundle.version, files = bundle.files.len(), "rule bundle received");
                        let (content, out) = (link.content.clone(), link.out_tx.clone());
                        tokio::spawn(async move {
                            if let Ok(state) = tokio::task::spawn_blocking(move || content.apply_rules(bundle)).await {
                                let _ = out.send(AgentMsg::ContentState(state)).await;
                            }
                        });
                    }
                    Some(CoordMsg::Indicators(set)) => {
                        let content = link.content.clone();
                        let state = tokio::task::spawn_blocking(move || content.apply_indicators(set)).await;
                        if let Ok(state) = state {
                            write_frame(&mut wr, &AgentMsg::ContentState(state), max).await?;
                        }
                    }
                    Some(CoordMsg::UrlBlocklist(list)) => {
                        let content = link.content.clone();
                        if let Err(error) = tokio::task::spawn_blocking(move || content.apply_url_blocklist(list)).await {
                            tracing::error!(%error, "URL blocklist task failed");
                        }
                    }
                    Some(CoordMsg::LinkKey(key)) => {
                        let Some(mail) = config.mail.as_ref() else { continue };
                        let Some(path) = mail.link_key_file.clone() else { continue };
                        let file = crate::mail::linkkey::KeyFile { click_url: key.click_url, device: link.device_id, key: key.key };
                        let group = mail.link_key_group.clone();
                        let stored = tokio::task::spawn_blocking(move || {
                            let stored = crate::mail::linkkey::store(&file, &path, &group);
                            (path, file.click_url, stored)
                        })
                        .await;
                        match stored {
                            Ok((path, url, Ok(()))) => tracing::info!(path = %path.display(), click_url = %url, "link key stored: delivered mail's links are wrapped"),
                            Ok((path, _, Err(error))) => tracing::error!(path = %path.display(), %error, "cannot store the link key: links are not wrapped"),
                            Err(error) => tracing::error!(%error, "link key task failed"),
                        }
                    }
                    Some(other) => tracing::warn!(frame = ?other, "unexpected frame ignored"),
                }
            }
        }
    }
}

/// What a session shares with the rest of the agent.
struct Link<'a> {
    state: &'a StateDir,
    status: &'a mut Status,
    executor: &'a Arc<Executor>,
    /// Frames the executor wants sent (started, progress, results, alerts).
    out: &'a mut mpsc::Receiver<AgentMsg>,
    out_tx: &'a mpsc::Sender<AgentMsg>,
    content: &'a Arc<Content>,
    alerts: &'a Arc<AlertQueue>,
    uploader: &'a Arc<crate::upload::Uploader>,
    /// The certificate of this session, and the pinned CA.
    cert: &'a rustls::pki_types::CertificateDer<'static>,
    ca: &'a rustls::pki_types::CertificateDer<'static>,
    device_id: uuid::Uuid,
}

/// Frames queued for the session; beyond this the executor drops started /
/// progress frames (results wait in the journal).
const OUT_DEPTH: usize = 256;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn save_status(state: &StateDir, status: &Status) {
    if let Err(error) = state.write_status(status) {
        tracing::warn!(%error, "cannot write status.json");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(60));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1), "{first:?}");
        let mut last = first;
        for _ in 0..10 {
            last = b.next_delay();
        }
        assert!(last >= Duration::from_secs(30) && last <= Duration::from_secs(60), "{last:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
        b.to_cap();
        assert!(b.next_delay() >= Duration::from_secs(30));
    }
}
