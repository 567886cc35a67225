//! Live sessions, one per device. A new session of a device replaces the old
//! one, which is told why and closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

#[derive(Default)]
pub struct Sessions {
    by_device: Mutex<HashMap<Uuid, SessionHandle>>,
    next_conn: AtomicU64,
}

impl Sessions {
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
    /// queue is full (control messages are never dropped); false when the
    /// device has no live session or it ended meanwhile.
    pub async fn send(&self, device: &Uuid, msg: CoordMsg) -> bool {
        let outbox = self.lock().get(device).map(|h| h.outbox.clone());
        match outbox {
            Some(outbox) => outbox.send(Outgoing::Frame(msg)).await.is_ok(),
            None => false,
        }
    }

    /// Queue a shared frame to the device's live session (see [`Self::send`]).
    pub(crate) async fn send_shared(&self, device: &Uuid, msg: Arc<CoordMsg>) -> bool {
        let outbox = self.lock().get(device).map(|h| h.outbox.clone());
        match outbox {
            Some(outbox) => outbox.send(Outgoing::Shared(msg)).await.is_ok(),
            None => false,
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
