//! The API's HTTP/1.1 server, over TLS unless the listener is plain HTTP
//! on loopback (`api::tls`). `axum::serve` takes no settings, so the
//! connection handling is hyper's, configured for clients that misbehave:
//! - a client has `header_timeout` to finish its TLS handshake and to send
//!   each request head — on a new connection and between keep-alive
//!   requests alike — so an idle or trickling (slowloris) connection is
//!   closed;
//! - a request's body and its handling get a deadline ([`request_timeout`]);
//! - at most `max_connections` are open; more wait in the kernel's backlog;
//! - on shutdown, open connections finish their request (bounded).

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
use tokio_rustls::TlsAcceptor;
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

/// Serve `app` on `listener` until `shutdown`: HTTPS through `tls` (with
/// HSTS), else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let app = if tls.is_some() { app.layer(axum::middleware::map_response(hsts)) } else { app };
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
        let tls = tls.clone();
        let span = tracing::debug_span!("api_conn", %peer);
        tokio::spawn(
            async move {
                match tls {
                    None => connection(tcp, peer, service, limits, shutdown).await,
                    Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, service, limits, shutdown).await,
                        Ok(Err(error)) => tracing::debug!(%error, "API TLS handshake failed"),
                        Err(_) => tracing::debug!("API TLS handshake timed out"),
                    },
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

/// Serve HTTP/1.1 on one connection until it ends or `shutdown`, then
/// close it so the client can read the last answer (see [`linger`]).
/// Each request carries the client's address (`ConnectInfo`).
async fn connection<IO>(
    io: IO,
    peer: std::net::SocketAddr,
    service: TowerToHyperService<Router>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // A boxed future is Unpin, which polling without hyper's own shutdown
    // needs: the connection's I/O comes back for the lingering close.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        Box::pin(hyper::service::Service::call(&service, req))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let ended = tokio::select! {
        done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => done,
        _ = shutdown.cancelled() => {
            Pin::new(&mut conn).graceful_shutdown();
            tokio::time::timeout(DRAIN, std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)))
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "API connection ended");
    }
    linger(conn.into_parts().io.into_inner()).await;
}

/// How long, and how much, a closing connection still reads.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 8 << 20;

/// Close a connection politely: say it is over (TLS close_notify, TCP
/// FIN), then read and drop what the client may still be sending for a
/// moment. A client whose request was answered before its body was read
/// (too large, refused) is still sending: closing on unread data would
/// reset the connection and lose it the answer.
async fn linger<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: IO) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tokio::time::timeout(LINGER, io.shutdown()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Browsers that reached the API over HTTPS keep to HTTPS for two years.
async fn hsts(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=63072000"),
    );
    response
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
