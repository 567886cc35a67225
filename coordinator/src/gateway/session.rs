//! One agent connection: TLS handshake, then either enrollment (no client
//! certificate) or an authenticated session (Hello, heartbeats, and later
//! actions).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use picket_common::io::{read_frame, write_frame, FrameError};
use picket_common::limits::{PRE_AUTH_MAX_FRAME, PROTOCOL_VERSION};
use picket_common::proto::{AgentMsg, CoordMsg, EnrollRequest, Enrolled, Hello, Refusal, RefusalReason, Welcome};
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::limits::{FrameRate, PreAuthGuard};
use super::registry::Outgoing;
use super::verifier::device_id_from_cert;
use super::Gateway;
use crate::clock::now_ms;
use crate::store::{DeviceStatus, HelloInfo, NewAudit, NewDeviceOwned, Refused, TokenRefusal};

/// How long an agent has to send its first frame after the handshake.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing frames queued per session before the sender waits. Control
/// messages are never dropped: a full queue applies backpressure.
const OUTBOX_DEPTH: usize = 16;

type Tls = TlsStream<TcpStream>;

impl Gateway {
    /// One accepted connection. `pre_auth` holds its place among the
    /// unauthenticated connections of its address until it authenticates
    /// (a certificate and an accepted Hello) or ends.
    pub(super) async fn handle(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        pre_auth: PreAuthGuard,
        shutdown: CancellationToken,
    ) {
        let tls = match tokio::time::timeout(self.config.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::info!(%error, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                return;
            }
        };
        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
        let device = cert.as_ref().and_then(device_id_from_cert);
        match device {
            Some(id) => {
                tracing::Span::current().record("device", tracing::field::display(id));
                let serial = cert.as_ref().and_then(super::verifier::serial_of).unwrap_or_default();
                self.run_session(tls, id, &serial, peer, pre_auth, shutdown).await;
            }
            None => {
                self.enroll(tls, peer).await;
                drop(pre_auth);
            }
        }
    }

    /// A connection without a client certificate may enroll, and do nothing
    /// else; its frames are capped at [`PRE_AUTH_MAX_FRAME`].
    async fn enroll(&self, mut tls: Tls, peer: SocketAddr) {
        let max = PRE_AUTH_MAX_FRAME;
        let request = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame::<_, AgentMsg>(&mut tls, max)).await {
            Ok(Ok(Some(AgentMsg::Enroll(req)))) => req,
            Ok(Ok(Some(other))) => {
                tracing::warn!(frame = frame_name(&other), "frame without a client certificate refused");
                refuse(
                    &mut tls,
                    RefusalReason::CertificateRequired,
                    "this connection has no client certificate: enroll first",
                    max,
                )
                .await;
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::warn!(%error, "bad frame on enrollment connection");
                return;
            }
            Err(_) => {
                tracing::info!("no frame before the deadline");
                return;
            }
        };
        let (reply, outcome) = match self.enroll_device(&request, peer).await {
            Ok(enrolled) => {
                tracing::info!(device = %enrolled.device_id, group = %enrolled.group, "device enrolled");
                (CoordMsg::Enrolled(enrolled), "ok".to_string())
            }
            Err((reason, message)) => {
                tracing::warn!(%reason, %message, "enrollment refused");
                (CoordMsg::Refused(Refusal { reason, message: message.clone() }), format!("refused: {message}"))
            }
        };
        let _ = write_frame(&mut tls, &reply, max).await;
        let target = match &reply {
            CoordMsg::Enrolled(e) => e.device_id.to_string(),
            _ => String::new(),
        };
        let audit = NewAudit {
            actor: "enrollment",
            action: "device.enroll",
            target: &target,
            result: &outcome,
            detail: &format!("hostname={} peer={}", request.hostname, peer.ip()),
        };
        if let Err(error) = self.store.audit(&audit).await {
            tracing::error!(%error, "could not write audit entry");
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    }

    async fn enroll_device(&self, req: &EnrollRequest, peer: SocketAddr) -> Result<Enrolled, (RefusalReason, String)> {
        if req.protocol_version != PROTOCOL_VERSION {
            return Err((
                RefusalReason::VersionMismatch,
                format!("agent speaks protocol {}, coordinator {}", req.protocol_version, PROTOCOL_VERSION),
            ));
        }
        let id = Uuid::new_v4();
        let hostname: String = req.hostname.chars().take(253).collect();
        let ip = Gateway::peer_ip(&peer);
        // The token is checked (and a use taken) before the CSR is parsed:
        // without a valid token, nothing of the request reaches a parser.
        let made = self
            .store
            .enroll_device_with(&req.token, |_| {
                let issued = self
                    .ca
                    .sign_device_csr(&req.csr_der, id, &hostname, self.config.device_cert_lifetime)
                    .map_err(|e| e.to_string())?;
                let new = NewDeviceOwned {
                    id,
                    hostname: hostname.clone(),
                    ip,
                    cert_serial: issued.serial_hex.clone(),
                    cert_not_after: issued.not_after_ms,
                };
                Ok::<_, String>((new, issued))
            })
            .await;
        let (grant, issued) = match made {
            Ok(Ok(done)) => done,
            Ok(Err(Refused::Request(why))) => return Err((RefusalReason::BadCsr, why)),
            Ok(Err(Refused::Token(refusal))) => {
                let (reason, message) = match refusal {
                    TokenRefusal::Unknown => (RefusalReason::TokenInvalid, "enrollment token not recognised"),
                    TokenRefusal::Expired => (RefusalReason::TokenExpired, "enrollment token has expired"),
                    TokenRefusal::UsedUp => (RefusalReason::TokenUsedUp, "enrollment token has no uses left"),
                    TokenRefusal::Revoked => (RefusalReason::TokenRevoked, "enrollment token was revoked"),
                    TokenRefusal::Suspended => (
                        RefusalReason::TokenRevoked,
                        "enrollment token is suspended: a device it enrolled was revoked; an admin can resume it",
                    ),
                };
                return Err((reason, message.to_string()));
            }
            Err(error) => {
                tracing::error!(%error, "enrollment failed in the store");
                return Err((RefusalReason::Internal, "coordinator could not record the enrollment".into()));
            }
        };
        self.directory.set(id, DeviceStatus::Active);
        let serial = super::verifier::serial_of(&issued.der).unwrap_or_default();
        self.directory.set_serials(id, super::verifier::Serials { current: serial, previous: None });
        Ok(Enrolled {
            device_id: id,
            certificate_der: issued.der.to_vec(),
            ca_der: self.ca.ca_der().to_vec(),
            group: grant.group,
        })
    }

    async fn run_session(
        self: &Arc<Self>,
        tls: Tls,
        id: Uuid,
        serial: &str,
        peer: SocketAddr,
        pre_auth: PreAuthGuard,
        shutdown: CancellationToken,
    ) {
        let max = self.config.max_frame;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let hello = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame::<_, AgentMsg>(&mut rd, max)).await {
            Ok(Ok(Some(AgentMsg::Hello(hello)))) => hello,
            Ok(Ok(Some(other))) => {
                tracing::warn!(frame = frame_name(&other), "first frame was not Hello");
                refuse(&mut wr, RefusalReason::ProtocolViolation, "the first frame must be Hello", max).await;
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::warn!(%error, "bad first frame");
                return;
            }
            Err(_) => {
                tracing::info!("no Hello before the deadline");
                return;
            }
        };
        if let Err((reason, message)) = self.check_hello(&id, &hello) {
            tracing::warn!(%reason, %message, "session refused");
            refuse(&mut wr, reason, &message, max).await;
            return;
        }
        let info = HelloInfo {
            hostname: &hello.hostname,
            os: &hello.os,
            kernel: &hello.kernel,
            agent_version: &hello.agent_version,
            ip: &Gateway::peer_ip(&peer),
            capabilities: &hello.capabilities,
        };
        if let Err(error) = self.store.record_hello(id, &info).await {
            tracing::error!(%error, "could not record Hello");
            refuse(&mut wr, RefusalReason::Internal, "coordinator storage unavailable", max).await;
            return;
        }
        let (out_tx, out_rx) = mpsc::channel(OUTBOX_DEPTH);
        let (conn_id, last_seen, mut stop) = self.sessions.register(id, peer, now_ms(), out_tx.clone());
        // The session may have been revoked between the check and registration.
        if self.directory.status(&id) != Some(DeviceStatus::Active) {
            self.sessions.unregister(id, conn_id);
            refuse(&mut wr, RefusalReason::Revoked, "device revoked", max).await;
            return;
        }
        // Authenticated: no longer counted against the address.
        drop(pre_auth);
        self.settle_serial(id, serial).await;
        let writer = tokio::spawn(write_loop(wr, out_rx, max, self.config.write_timeout));
        let welcome = Welcome {
            device_id: id,
            heartbeat_secs: self.config.heartbeat.as_secs().try_into().unwrap_or(u32::MAX),
            server_time_ms: now_ms(),
        };
        let _ = out_tx.send(Outgoing::Frame(CoordMsg::Welcome(welcome))).await;
        tracing::info!(hostname = %hello.hostname, agent_version = %hello.agent_version, "session open");
        // Whatever was queued or sent while the device was away goes now.
        let gateway = self.clone();
        tokio::spawn(async move { gateway.deliver(id).await }.in_current_span());

        let idle = self.config.heartbeat * 3;
        let mut rate = FrameRate::new(self.config.max_frames_per_sec);
        let end = loop {
            rate.wait().await;
            tokio::select! {
                _ = shutdown.cancelled() => break End::Refuse(RefusalReason::ShuttingDown),
                reason = &mut stop => break End::Refuse(reason.unwrap_or(RefusalReason::Internal)),
                frame = tokio::time::timeout(idle, read_frame::<_, AgentMsg>(&mut rd, max)) => match frame {
                    Err(_) => break End::Log("no frame within three heartbeat intervals"),
                    Ok(Ok(None)) => break End::Log("agent closed the session"),
                    Ok(Err(FrameError::Io(error))) => {
                        tracing::info!(%error, "connection lost");
                        break End::Quiet;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "malformed frame; closing this session");
                        break End::Quiet;
                    }
                    Ok(Ok(Some(msg))) => {
                        last_seen.store(now_ms(), Ordering::Relaxed);
                        match msg {
                            AgentMsg::Heartbeat { seq } => {
                                if out_tx.send(Outgoing::Frame(CoordMsg::HeartbeatAck { seq })).await.is_err() {
                                    break End::Log("writer closed");
                                }
                            }
                            AgentMsg::ActionStarted { action_id } => self.on_action_started(id, action_id).await,
                            AgentMsg::ActionProgress { action_id, phase, percent } => {
                                if let Err(error) = self.store.action_progress(action_id, id, &phase, percent.min(100)).await {
                                    tracing::warn!(%error, %action_id, "could not record progress");
                                }
                            }
                            AgentMsg::ActionResult(result) => {
                                // Acknowledge only what is stored: the agent keeps it until then.
                                if self.on_action_result(id, &result).await {
                                    let ack = CoordMsg::ResultAck { action_id: result.action_id };
                                    if out_tx.send(Outgoing::Frame(ack)).await.is_err() {
                                        break End::Log("writer closed");
                                    }
                                    if self.directory.status(&id) == Some(DeviceStatus::Offboarded) {
                                        break End::Refuse(RefusalReason::Offboarded);
                                    }
                                }
                            }
                            AgentMsg::Alert(report) => {
                                // Acknowledge only what is stored: the agent keeps it until then.
                                if self.on_alert(id, &report).await {
                                    let ack = CoordMsg::AlertAck { report_id: report.report_id };
                                    if out_tx.send(Outgoing::Frame(ack)).await.is_err() {
                                        break End::Log("writer closed");
                                    }
                                }
                            }
                            AgentMsg::UploadBegin(begin) => {
                                let ack = self.uploads.begin(id, &begin).await;
                                if out_tx.send(Outgoing::Frame(CoordMsg::UploadAck(ack))).await.is_err() {
                                    break End::Log("writer closed");
                                }
                            }
                            AgentMsg::UploadChunk(chunk) => {
                                let ack = self.uploads.chunk(id, chunk).await;
                                if out_tx.send(Outgoing::Frame(CoordMsg::UploadAck(ack))).await.is_err() {
                                    break End::Log("writer closed");
                                }
                            }
                            AgentMsg::RenewCertificate { csr_der } => {
                                if let Some(reply) = self.renew_certificate(id, serial, &hello.hostname, &csr_der).await {
                                    if out_tx.send(Outgoing::Frame(reply)).await.is_err() {
                                        break End::Log("writer closed");
                                    }
                                }
                            }
                            AgentMsg::ContentState(state) => {
                                let gateway = self.clone();
                                tokio::spawn(async move { gateway.on_content_state(id, state).await }.in_current_span());
                            }
                            AgentMsg::MailHost(facts) => {
                                let mut closed = false;
                                for reply in self.on_mail_host(id, &hello, facts).await {
                                    closed |= out_tx.send(Outgoing::Frame(reply)).await.is_err();
                                }
                                if closed {
                                    break End::Log("writer closed");
                                }
                            }
                            other => {
                                tracing::warn!(frame = frame_name(&other), "unexpected frame in session");
                                break End::Refuse(RefusalReason::ProtocolViolation);
                            }
                        }
                    }
                }
            }
        };
        self.sessions.unregister(id, conn_id);
        // The writer may be stuck on a device that stopped reading: nothing
        // here waits on it for long.
        let last = |msg| out_tx.send_timeout(msg, Duration::from_secs(5));
        match end {
            End::Refuse(reason) => {
                tracing::info!(%reason, "session closed by coordinator");
                let refusal = Refusal { reason, message: reason.to_string() };
                let _ = last(Outgoing::Frame(CoordMsg::Refused(refusal))).await;
            }
            End::Log(why) => tracing::info!(why, "session closed"),
            End::Quiet => {}
        }
        let _ = last(Outgoing::Close).await;
        drop(out_tx);
        let mut writer = writer;
        if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
            writer.abort();
        }
        if let Err(error) = self.store.record_last_seen(&[(id, last_seen.load(Ordering::Relaxed))]).await {
            tracing::warn!(%error, "could not record last-seen time");
        }
    }

    /// A mail host declared its internal domains: kept when the session's
    /// Hello offered the mail kinds and every one is a plain domain name
    /// (what the device says is its own business, but malformed text is
    /// not stored). The answer: its URL blocklist, when the agent takes
    /// one, and its link key, when there is a click listener and the agent
    /// takes one.
    async fn on_mail_host(&self, id: Uuid, hello: &Hello, facts: picket_common::proto::MailHostFacts) -> Vec<CoordMsg> {
        use picket_common::actions::mail::{valid_domain, MAX_DOMAINS};
        let offers = |capability: &str| hello.capabilities.iter().any(|c| c == capability);
        if !offers(picket_common::actions::ActionKind::MailSearch.as_str()) {
            tracing::warn!("mail host facts from an agent that offers no mail kinds: ignored");
            return Vec::new();
        }
        let domains = facts.internal_domains;
        if domains.len() > MAX_DOMAINS || !domains.iter().all(|d| valid_domain(d)) {
            tracing::warn!(
                count = domains.len(),
                "mail host facts refused: not at most {MAX_DOMAINS} lowercase domain names"
            );
            return Vec::new();
        }
        if let Err(error) = self.store.record_mail_host(id, &domains).await {
            tracing::warn!(%error, "could not record the mail host's domains");
        }
        let mut replies = Vec::new();
        if offers(picket_common::url_blocklist::CAPABILITY) {
            match self.url_blocklist(id).await {
                Ok(list) => replies.push(CoordMsg::UrlBlocklist(list)),
                Err(error) => {
                    tracing::error!(%error, "cannot read the mail host's URL blocklist; it gets it after the next change")
                }
            }
        }
        if let Some(links) = self.links.as_ref().filter(|_| offers(picket_common::links::CAPABILITY)) {
            tracing::info!(click_url = %links.url, "link key sent to the mail host");
            replies.push(CoordMsg::LinkKey(picket_common::proto::LinkKey {
                click_url: links.url.clone(),
                key: links.secret.device_key(id),
            }));
        }
        replies
    }

    /// A session that authenticated with the device's current certificate
    /// makes the one its last renewal replaced void.
    async fn settle_serial(&self, id: Uuid, serial: &str) {
        let Some(serials) = self.directory.serials(&id) else { return };
        if serials.previous.is_some() && serials.current == serial {
            if let Err(error) = self.store.forget_previous_serial(id).await {
                tracing::warn!(%error, "cannot record that the renewed certificate is in use");
                return;
            }
            self.directory.set_serials(id, super::verifier::Serials { current: serials.current, previous: None });
            tracing::info!("renewed certificate in use; the previous one is void");
        }
    }

    /// Renew the session's device certificate for the key of `csr_der`. The
    /// identity is the session's, never anything in the request. The
    /// certificate this session uses (`serial`) stays valid until the new
    /// one is used — whatever earlier renewals it asked for and never
    /// received.
    async fn renew_certificate(&self, id: Uuid, serial: &str, hostname: &str, csr_der: &[u8]) -> Option<CoordMsg> {
        let hostname: String = hostname.chars().take(253).collect();
        let issued = match self.ca.sign_device_csr(csr_der, id, &hostname, self.config.device_cert_lifetime) {
            Ok(i) => i,
            Err(error) => {
                tracing::warn!(%error, "certificate renewal refused");
                return None;
            }
        };
        let in_use = serial;
        let serial = super::verifier::serial_of(&issued.der).unwrap_or_default();
        if let Err(error) = self.store.record_renewal(id, &serial, in_use, issued.not_after_ms).await {
            tracing::error!(%error, "cannot record a renewed certificate; the agent will ask again");
            return None;
        }
        let previous = Some(in_use.to_string());
        self.directory.set_serials(id, super::verifier::Serials { current: serial.clone(), previous });
        let audit = NewAudit {
            actor: "device",
            action: "device.renew_certificate",
            target: &id.to_string(),
            result: "ok",
            detail: &format!("serial={serial} not_after={}", crate::clock::rfc3339(issued.not_after_ms)),
        };
        if let Err(error) = self.store.audit(&audit).await {
            tracing::error!(%error, "could not write audit entry");
        }
        tracing::info!(%serial, "device certificate renewed");
        Some(CoordMsg::CertificateRenewed { certificate_der: issued.der.to_vec() })
    }

    fn check_hello(&self, id: &Uuid, hello: &Hello) -> Result<(), (RefusalReason, String)> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err((
                RefusalReason::VersionMismatch,
                format!(
                    "agent {} speaks protocol {}, this coordinator speaks {}",
                    hello.agent_version, hello.protocol_version, PROTOCOL_VERSION
                ),
            ));
        }
        match self.directory.status(id) {
            Some(DeviceStatus::Active) => Ok(()),
            Some(DeviceStatus::Revoked) => Err((RefusalReason::Revoked, "device revoked".into())),
            Some(DeviceStatus::Offboarded) => Err((RefusalReason::Offboarded, "device offboarded".into())),
            None => Err((RefusalReason::UnknownDevice, "unknown device".into())),
        }
    }
}

enum End {
    Refuse(RefusalReason),
    Log(&'static str),
    Quiet,
}

/// Write the session's frames; a frame the device does not take within
/// `timeout` (it stopped reading) ends the session.
async fn write_loop(mut wr: WriteHalf<Tls>, mut rx: mpsc::Receiver<Outgoing>, max: u32, timeout: Duration) {
    while let Some(out) = rx.recv().await {
        let written = match &out {
            Outgoing::Frame(msg) => tokio::time::timeout(timeout, write_frame(&mut wr, msg, max)).await,
            Outgoing::Shared(msg) => tokio::time::timeout(timeout, write_frame(&mut wr, msg.as_ref(), max)).await,
            Outgoing::Close => break,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "write failed");
                return;
            }
            Err(_) => {
                tracing::warn!(timeout_secs = timeout.as_secs(), "the device takes no frames; closing its session");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncWriteExt::shutdown(&mut wr)).await;
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, reason: RefusalReason, message: &str, max: u32) {
    let msg = CoordMsg::Refused(Refusal { reason, message: message.to_string() });
    let _ = write_frame(w, &msg, max).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(w).await;
}

fn frame_name(msg: &AgentMsg) -> &'static str {
    match msg {
        AgentMsg::Hello(_) => "Hello",
        AgentMsg::Heartbeat { .. } => "Heartbeat",
        AgentMsg::Enroll(_) => "Enroll",
        AgentMsg::ActionStarted { .. } => "ActionStarted",
        AgentMsg::ActionProgress { .. } => "ActionProgress",
        AgentMsg::ActionResult(_) => "ActionResult",
        AgentMsg::Alert(_) => "Alert",
        AgentMsg::ContentState(_) => "ContentState",
        AgentMsg::UploadBegin(_) => "UploadBegin",
        AgentMsg::UploadChunk(_) => "UploadChunk",
        AgentMsg::RenewCertificate { .. } => "RenewCertificate",
        AgentMsg::MailHost(_) => "MailHost",
    }
}
