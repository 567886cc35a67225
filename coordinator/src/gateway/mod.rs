//! The agent gateway: the mutual-TLS listener, one task per connection, the
//! registry of live sessions, and enrollment.
//!
//! Accept loop: a semaphore caps connections; each source address may hold
//! only so many unauthenticated ones (the rest are closed at once); each
//! accepted socket gets a task with its own span; the TLS handshake has a
//! deadline; the client certificate is checked in the handshake by
//! [`verifier::DeviceCertVerifier`]. Sessions are limited too: frames per
//! second (the reader waits), detections per minute (the excess counted),
//! and a device that stops reading is cut off ([`limits`]).
//! A session costs two small tasks (reader loop, writer) and no thread.

mod content;
mod dispatch;
pub mod limits;
pub mod metrics;
mod registry;
mod session;
pub mod verifier;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use registry::{SessionInfo, Sessions};
pub use verifier::DeviceDirectory;

use crate::content::Content;
use crate::pki::Ca;
use crate::store::Store;

/// Gateway tunables (see `packaging/coordinator.toml`).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_frame: u32,
    /// Detections a device may report a minute; the rest are counted, not stored.
    pub max_alerts_per_minute: u32,
    /// Unauthenticated connections (handshakes, enrollments) one source
    /// address may hold open; more are closed at once.
    pub max_unauthenticated_per_ip: usize,
    /// Frames a session may send a second (twice that at once); past it its
    /// reader waits.
    pub max_frames_per_sec: u32,
    /// A device that takes no frame for this long is cut off.
    pub write_timeout: Duration,
    /// Lifetime of the device certificates this gateway issues.
    pub device_cert_lifetime: time::Duration,
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub store: Store,
    pub ca: Arc<Ca>,
    pub directory: Arc<DeviceDirectory>,
    pub sessions: Sessions,
    /// Rule bundle and indicators agents should hold.
    pub content: Arc<Content>,
    /// Files agents upload (samples).
    pub uploads: Arc<crate::uploads::Uploads>,
    /// Mail hosts' link keys, when the coordinator has a click listener.
    pub links: Option<Arc<crate::click::Links>>,
    pub metrics: metrics::Metrics,
    /// Detections per device per minute.
    pub alert_limit: limits::PerDevice,
    /// Unauthenticated connections per source address.
    pub pre_auth: Arc<limits::PreAuth>,
    acceptor: TlsAcceptor,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        store: Store,
        ca: Arc<Ca>,
        directory: Arc<DeviceDirectory>,
        content: Arc<Content>,
        uploads: Arc<crate::uploads::Uploads>,
        links: Option<Arc<crate::click::Links>>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verifier::DeviceCertVerifier::new(ca.ca_der().clone(), directory.clone(), provider.clone())?;
        let (chain, key) = ca.server_identity();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(chain, key)?;
        let write_timeout = config.write_timeout;
        Ok(Arc::new(Self {
            alert_limit: limits::PerDevice::per_minute(config.max_alerts_per_minute),
            pre_auth: limits::PreAuth::new(config.max_unauthenticated_per_ip),
            config,
            store,
            ca,
            directory,
            sessions: Sessions::new(write_timeout),
            content,
            uploads,
            links,
            metrics: metrics::Metrics::default(),
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        }))
    }

    /// Accept agent connections until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let flusher = tokio::spawn(self.clone().flush_last_seen(shutdown.clone()));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(pre_auth) = self.pre_auth.admit(peer.ip()) else {
                // Over its address's share of unauthenticated connections:
                // closed at once, holding nothing (counted, logged rarely).
                let refused = self.pre_auth.refused.load(std::sync::atomic::Ordering::Relaxed);
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, refused, "too many unauthenticated connections from one address; closing new ones");
                }
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let gw = self.clone();
            let shutdown = shutdown.clone();
            let span = tracing::info_span!("agent_conn", %peer, device = tracing::field::Empty);
            tokio::spawn(
                async move {
                    gw.handle(tcp, peer, pre_auth, shutdown).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        let _ = flusher.await;
    }

    /// Write live sessions' last-contact times every few seconds, in one
    /// transaction, instead of one write per heartbeat.
    async fn flush_last_seen(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.store.record_last_seen(&self.sessions.last_seen_all()).await {
                tracing::warn!(%error, "could not record last-seen times");
            }
        }
        if let Err(error) = self.store.record_last_seen(&self.sessions.last_seen_all()).await {
            tracing::warn!(%error, "could not record last-seen times at shutdown");
        }
    }

    /// Whether `device` has a live session on this coordinator.
    pub fn session(&self, device: &uuid::Uuid) -> Option<SessionInfo> {
        self.sessions.info(device)
    }

    pub fn peer_ip(peer: &SocketAddr) -> String {
        peer.ip().to_string()
    }
}
