//! `GET /metrics`: Prometheus text exposition (no auth; it carries counts,
//! never names or ids — bind the API to a private address).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP picket_sessions Live agent sessions on this coordinator.");
    let _ = writeln!(out, "# TYPE picket_sessions gauge");
    let _ = writeln!(out, "picket_sessions {}", state.gateway.sessions.len());
    let _ = writeln!(out, "# HELP picket_actions Actions by kind and status.");
    let _ = writeln!(out, "# TYPE picket_actions gauge");
    for (kind, status, n) in state.store.action_counts().await? {
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
