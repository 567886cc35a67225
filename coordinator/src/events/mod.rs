//! Events out: every action transition is a row in `action_events` (written
//! in the same transaction as the change); sinks read that log in order from
//! their own persisted cursor, so a slow or absent receiver delays only its
//! own delivery and loses nothing, and the pipeline never waits for a sink.
//!
//! - [`Events`]: the wake-up signal writers pulse after a commit.
//! - [`webhook`]: HTTP POST of JSON, retried with backoff.
//! - [`syslog`]: RFC 5424 over UDP or TCP.

pub mod sink;
pub mod syslog;
pub mod webhook;

use tokio::sync::watch;

/// Pulsed after each committed transition; sinks wait on it.
pub struct Events {
    tx: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Self { tx: watch::channel(0).0 }
    }
}

impl Events {
    pub fn changed(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
