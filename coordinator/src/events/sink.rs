//! The delivery loop shared by every sink: read a log (`action_events`, and
//! on a second loop `alert_events`) after the sink's persisted cursor for
//! it, deliver each in order, retry a failed delivery with exponential
//! backoff (1 s … 60 s), advance the cursor only after a success. A new sink
//! starts at the current end of each log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::store::{ActionEvent, AlertEvent, Store, StoreError};

/// A destination for events. `deliver` blocks (it runs on a blocking thread).
pub trait Sink: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn deliver(&self, event: &Value) -> Result<(), String>;
}

/// The two logs a sink follows, each with its own cursor.
#[derive(Debug, Clone, Copy)]
enum Log {
    /// `action_events`; cursor named after the sink.
    Actions,
    /// `alert_events`; cursor `<sink>#alerts`.
    Alerts,
}

impl Log {
    fn cursor_name(self, sink: &str) -> String {
        match self {
            Self::Actions => sink.to_string(),
            Self::Alerts => format!("{sink}#alerts"),
        }
    }

    async fn last_id(self, store: &Store) -> Result<i64, StoreError> {
        match self {
            Self::Actions => store.last_event_id().await,
            Self::Alerts => store.last_alert_event_id().await,
        }
    }

    /// The next events after `cursor` as (id, payload).
    async fn read(self, store: &Store, cursor: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        let mut out = Vec::new();
        match self {
            Self::Actions => {
                for e in store.events_after(cursor, 200).await? {
                    out.push((e.id, payload(store, &e).await));
                }
            }
            Self::Alerts => {
                for e in store.alert_events_after(cursor, 200).await? {
                    out.push((e.id, alert_payload(store, &e).await));
                }
            }
        }
        Ok(out)
    }
}

/// Deliver both logs to `sink` until `shutdown`.
pub async fn run(store: Store, sink: Arc<dyn Sink>, shutdown: CancellationToken) {
    tokio::join!(
        follow(Log::Actions, store.clone(), sink.clone(), shutdown.clone()),
        follow(Log::Alerts, store, sink, shutdown),
    );
}

async fn follow(log: Log, store: Store, sink: Arc<dyn Sink>, shutdown: CancellationToken) {
    let name = log.cursor_name(sink.name());
    let mut wake = store.logged().subscribe();
    let mut cursor = loop {
        let start = match store.sink_cursor(&name).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => match log.last_id(&store).await {
                Ok(last) => store.set_sink_cursor(&name, last).await.map(|_| last),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match start {
            Ok(c) => break c,
            Err(error) => {
                tracing::warn!(%error, sink = %name, "cannot read the sink cursor; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    loop {
        let batch = match log.read(&store, cursor).await {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(%error, sink = %name, "cannot read events");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.changed() => {}
                // Writers on another replica do not pulse us: look anyway.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        for (id, payload) in batch {
            let mut backoff = Duration::from_secs(1);
            loop {
                let s = sink.clone();
                let p = payload.clone();
                let sent =
                    tokio::task::spawn_blocking(move || s.deliver(&p)).await.unwrap_or_else(|e| Err(e.to_string()));
                match sent {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, sink = %name, event = id, retry_in_s = backoff.as_secs(), "event delivery failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
            cursor = id;
            if let Err(error) = store.set_sink_cursor(&name, cursor).await {
                tracing::warn!(%error, sink = %name, "cannot save the sink cursor (events may repeat after a restart)");
            }
        }
    }
}

/// The JSON every sink receives for one alert event.
pub async fn alert_payload(store: &Store, e: &AlertEvent) -> Value {
    let alert = match store.alert(e.alert_id).await {
        Ok(Some(a)) => crate::views::alert_json(&a),
        _ => Value::Null,
    };
    json!({
        "type": format!("alert.{}", e.kind),
        "event_id": e.id,
        "at": crate::clock::rfc3339(e.at),
        "alert_id": e.alert_id,
        "status": e.status,
        "actor": e.actor,
        "comment": e.comment,
        "alert": alert,
    })
}

/// The JSON every sink receives for one transition.
pub async fn payload(store: &Store, e: &ActionEvent) -> Value {
    let action = match store.action(e.action_id).await {
        Ok(Some(a)) => crate::views::action_json(&a),
        _ => Value::Null,
    };
    json!({
        "type": "action.transition",
        "event_id": e.id,
        "at": crate::clock::rfc3339(e.at),
        "action_id": e.action_id,
        "from": e.from_status,
        "to": e.status,
        "actor": e.actor,
        "comment": e.comment,
        "action": action,
    })
}
