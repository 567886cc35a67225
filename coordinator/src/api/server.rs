//! The API's HTTP/1.1 server. `axum::serve` takes no settings, so the
//! connection handling is hyper's, configured for clients that misbehave:
//! - a client has `header_timeout` to send each request head — on a new
//!   connection and between keep-alive requests alike — so an idle or
//!   trickling (slowloris) connection is closed;
//! - a request's body and its handling get a deadline ([`request_timeout`]);
//! - at most `max_connections` are open; more wait in the kernel's backlog;
//! - on shutdown, open connections finish their request (bounded).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// How long a request (its body and its handling) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Rule uploads compile on the coordinator (the checker's own limit is 300 s).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(330);
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: CancellationToken) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "API accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("api_conn", %peer);
        tokio::spawn(
            async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
                let mut conn = pin!(builder.serve_connection(TokioIo::new(tcp), service));
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(error) = done {
                            tracing::debug!(%error, "API connection ended");
                        }
                    }
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN, conn).await;
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    // Wait (bounded) for the connections still open.
    let drained = tokio::time::timeout(DRAIN, permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX))).await;
    if drained.is_err() {
        tracing::warn!("API connections still open at shutdown were dropped");
    }
}

/// Middleware: a request must be read and answered within its deadline
/// (408 otherwise), so a client that sends its body slowly holds nothing
/// for long.
pub async fn request_timeout(req: Request, next: Next) -> Response {
    let limit = if req.method() == axum::http::Method::POST && req.uri().path().ends_with("/rules") {
        UPLOAD_TIMEOUT
    } else {
        REQUEST_TIMEOUT
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!("the request took longer than {} s", limit.as_secs())).into_response(),
    }
}
