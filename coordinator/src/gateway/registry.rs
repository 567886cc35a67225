//! Live sessions, one per device. A new session of a device replaces the old
//! one, which is told why and closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picket_common::proto::{CoordMsg, RefusalReason};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// What the session's writer task sends.
pub(crate) enum Outgoing {
    Frame(CoordMsg),
    /// A frame many sessions send (a rule bundle): encoded per session, never copied.
    Shared(Arc<CoordMsg>),
    Close,
}

/// What the registry keeps of one live session.
pub struct SessionHandle {
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub connected_at: i64,
    pub last_seen: Arc<AtomicI64>,
    outbox: mpsc::Sender<Outgoing>,
    stop: Option<oneshot::Sender<RefusalReason>>,
}

impl SessionHandle {
    fn stop(mut self, reason: RefusalReason) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(reason);
        }
    }
}

/// Snapshot of one live session, for the API.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub peer: SocketAddr,
    pub connected_at: i64,
    pub last_seen: i64,
}

pub struct Sessions {
    by_device: Mutex<HashMap<Uuid, SessionHandle>>,
    next_conn: AtomicU64,
    /// How long a frame may wait for room in a session's queue: a device
    /// that stops reading is cut off after this, instead of holding up
    /// whoever is sending to it.
    send_timeout: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl Sessions {
    pub fn new(send_timeout: Duration) -> Self {
        Self { by_device: Mutex::default(), next_conn: AtomicU64::new(0), send_timeout }
    }

    /// Register a session and get its connection id and stop signal. An
    /// existing session of the same device is stopped with `Replaced`.
    pub(crate) fn register(
        &self,
        device: Uuid,
        peer: SocketAddr,
        now: i64,
        outbox: mpsc::Sender<Outgoing>,
    ) -> (u64, Arc<AtomicI64>, oneshot::Receiver<RefusalReason>) {
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let last_seen = Arc::new(AtomicI64::new(now));
        let handle =
            SessionHandle { conn_id, peer, connected_at: now, last_seen: last_seen.clone(), outbox, stop: Some(tx) };
        let old = self.lock().insert(device, handle);
        if let Some(old) = old {
            tracing::info!(device = %device, old_peer = %old.peer, new_peer = %peer, "new session replaces the old one");
            old.stop(RefusalReason::Replaced);
        }
        (conn_id, last_seen, rx)
    }

    /// Remove the session `conn_id` of `device` if it is still the current one.
    pub fn unregister(&self, device: Uuid, conn_id: u64) {
        let mut map = self.lock();
        if map.get(&device).is_some_and(|h| h.conn_id == conn_id) {
            map.remove(&device);
        }
    }

    /// Stop the device's live session, if any.
    pub fn disconnect(&self, device: Uuid, reason: RefusalReason) -> bool {
        let handle = self.lock().remove(&device);
        handle.map(|h| h.stop(reason)).is_some()
    }

    /// Queue a frame to the device's live session. Waits while the session's
    /// queue is full (control messages are never dropped), up to the send
    /// timeout: a session still full then is cut off (its device stopped
    /// reading; what it was sent goes again on its next connect). False when
    /// the device has no live session or it ended.
    pub async fn send(&self, device: &Uuid, msg: CoordMsg) -> bool {
        self.queue(device, Outgoing::Frame(msg)).await
    }

    /// Queue a shared frame to the device's live session (see [`Self::send`]).
    pub(crate) async fn send_shared(&self, device: &Uuid, msg: Arc<CoordMsg>) -> bool {
        self.queue(device, Outgoing::Shared(msg)).await
    }

    async fn queue(&self, device: &Uuid, out: Outgoing) -> bool {
        let session = self.lock().get(device).map(|h| (h.outbox.clone(), h.conn_id));
        let Some((outbox, conn_id)) = session else { return false };
        match outbox.send_timeout(out, self.send_timeout).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(%device, timeout_secs = self.send_timeout.as_secs(),
                    "the device stopped reading its session; cutting it off");
                let mut map = self.lock();
                if map.get(device).is_some_and(|h| h.conn_id == conn_id) {
                    if let Some(h) = map.remove(device) {
                        h.stop(RefusalReason::ProtocolViolation);
                    }
                }
                false
            }
        }
    }

    /// Devices with a live session.
    pub fn live_devices(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    pub fn info(&self, device: &Uuid) -> Option<SessionInfo> {
        self.lock().get(device).map(|h| SessionInfo {
            peer: h.peer,
            connected_at: h.connected_at,
            last_seen: h.last_seen.load(Ordering::Relaxed),
        })
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live session's last contact, for the periodic flush.
    pub fn last_seen_all(&self) -> Vec<(Uuid, i64)> {
        self.lock().iter().map(|(id, h)| (*id, h.last_seen.load(Ordering::Relaxed))).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, SessionHandle>> {
        self.by_device.lock().unwrap_or_else(|p| p.into_inner())
    }
}
