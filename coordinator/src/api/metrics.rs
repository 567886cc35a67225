//! `GET /metrics`: Prometheus text exposition (no auth; it carries counts,
//! never names or ids — bind the API to a private address). The one count
//! that needs the database (actions by kind and status) is refreshed at
//! most every [`REFRESH`], so unauthenticated scrapes cannot load it.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// How old the database counts may be.
pub const REFRESH: Duration = Duration::from_secs(15);

/// Actions by (kind, status), and when they were read.
type ActionCounts = Option<(Instant, Vec<(String, String, i64)>)>;

#[derive(Default)]
pub struct ApiMetrics {
    /// Requests refused for want of a valid token.
    pub unauthenticated: AtomicU64,
    /// (when read, actions by kind and status).
    action_counts: tokio::sync::Mutex<ActionCounts>,
}

impl ApiMetrics {
    async fn action_counts(&self, state: &AppState) -> Result<Vec<(String, String, i64)>, ApiError> {
        let mut cached = self.action_counts.lock().await;
        if let Some((at, counts)) = cached.as_ref() {
            if at.elapsed() < REFRESH {
                return Ok(counts.clone());
            }
        }
        let counts = state.store.action_counts().await?;
        *cached = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

/// Prometheus metrics (no authentication: counts only, never names or ids).
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP picket_sessions Live agent sessions on this coordinator.");
    let _ = writeln!(out, "# TYPE picket_sessions gauge");
    let _ = writeln!(out, "picket_sessions {}", state.gateway.sessions.len());
    let _ =
        writeln!(out, "# HELP picket_actions Actions by kind and status (refreshed every {} s).", REFRESH.as_secs());
    let _ = writeln!(out, "# TYPE picket_actions gauge");
    for (kind, status, n) in state.metrics.action_counts(&state).await? {
        let _ = writeln!(out, "picket_actions{{kind=\"{kind}\",status=\"{status}\"}} {n}");
    }
    let (buckets, count, sum_ms) = state.gateway.metrics.dispatch_snapshot();
    let _ = writeln!(out, "# HELP picket_dispatch_latency_seconds From queued to the agent starting the action.");
    let _ = writeln!(out, "# TYPE picket_dispatch_latency_seconds histogram");
    for (bound_ms, n) in buckets {
        let _ = writeln!(out, "picket_dispatch_latency_seconds_bucket{{le=\"{}\"}} {n}", bound_ms as f64 / 1000.0);
    }
    let _ = writeln!(out, "picket_dispatch_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "picket_dispatch_latency_seconds_sum {}", sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "picket_dispatch_latency_seconds_count {count}");
    let counters = [
        (
            "picket_api_unauthenticated_total",
            "API requests refused for want of a valid token.",
            state.metrics.unauthenticated.load(Ordering::Relaxed),
        ),
        (
            "picket_alerts_dropped_total",
            "Detections devices sent past their rate (counted, not stored).",
            state.gateway.metrics.alerts_dropped.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, n) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {n}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
