//! The HTTP server loop, written out instead of `axum::serve` because that one sets no limit
//! on slow clients: a client that opens connections and sends its headers a byte at a time
//! (or never) held them for ever. Here, on hyper's own server (as axum's "serve with hyper"
//! example does):
//! - the headers of every request must arrive within `api.header_read_timeout_secs` (on a
//!   new connection and between requests on a kept-alive one), or the connection is closed;
//! - a request body may not go `api.body_idle_timeout_secs` without a byte (an upload that
//!   keeps sending is never cut off);
//! - at most `api.max_connections` connections are served at once; one more is closed as
//!   soon as it is accepted (and logged), so a flood costs sockets, not memory per request;
//! - on shutdown, connections finish the requests they are serving (hyper's graceful
//!   shutdown) for up to `queue.shutdown_grace_secs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jobs_core::config::ApiConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Serves `app` on `listener` until `shutdown`, under `limits`; then waits up to `grace`
/// for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ApiConfig,
    grace: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app.layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
        limits.body_idle_timeout_secs,
    )));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: the next accept may work.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "connection refused: api.max_connections reached");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away or breaks the protocol ends its connection only.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "requests still in flight at the end of the shutdown grace"
        );
    }
    Ok(())
}
