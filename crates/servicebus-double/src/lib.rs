//! A double of Azure Service Bus's REST protocol, for tests and benchmarks.
//!
//! [`ServiceBusDouble`] serves, on loopback, the subset of the Service Bus REST API the
//! Offload client uses: queue management (Atom XML), single and batch sends, peek-lock and
//! receive-and-delete with long polling, complete/abandon/renew, scheduled messages,
//! duplicate detection, `MaxDeliveryCount` dead-lettering and the `$DeadLetterQueue`
//! sub-entity, all behind Shared Access Signature checks. The state survives
//! [`ServiceBusDouble::stop`]/[`ServiceBusDouble::restart`], so tests can simulate an outage.
//!
//! Modules: `state` holds the queue semantics as pure logic over an explicit `now`;
//! `routes` is the HTTP layer; `atom`, `wire`, `sas` and `time` are the wire formats.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

mod atom;
mod routes;
mod sas;
mod state;
mod time;
mod wire;

use routes::AppState;
use sas::SasKey;

/// The namespace's shared access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleOptions {
    pub key_name: String,
    /// The key, used as given (UTF-8 bytes) as the HMAC key, like the real service.
    pub key: String,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        Self {
            key_name: "RootManageSharedAccessKey".to_owned(),
            key: "ZG91YmxlLWtleS1mb3ItdGVzdHMtb25seQ==".to_owned(),
        }
    }
}

/// A running (or stopped) Service Bus double. Dropping it stops the server.
pub struct ServiceBusDouble {
    /// Queues, hooks and key; shared with every incarnation of the server.
    app: Arc<AppState>,
    /// The bound address, kept so `restart` serves on the same port.
    addr: SocketAddr,
    options: DoubleOptions,
    /// `None` while stopped.
    server: Option<Server>,
}

impl ServiceBusDouble {
    /// Binds 127.0.0.1 on a free port and serves until dropped or stopped.
    pub async fn start(opts: DoubleOptions) -> io::Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts).await
    }

    /// Binds `addr` (port 0 picks a free one) and serves until dropped or stopped.
    pub async fn start_on(addr: SocketAddr, opts: DoubleOptions) -> io::Result<Self> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let key = SasKey::new(opts.key_name.clone(), opts.key.clone());
        let app = Arc::new(AppState::new(key, format!("http://{addr}")));
        let server = Server::spawn(listener, routes::router(Arc::clone(&app)));
        Ok(Self {
            app,
            addr,
            options: opts,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn endpoint(&self) -> String {
        self.app.endpoint().to_owned()
    }

    /// `Endpoint=sb://127.0.0.1:PORT/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true`
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};UseDevelopmentEmulator=true",
            self.addr, self.options.key_name, self.options.key
        )
    }

    /// Stops listening and closes every open connection (in-flight requests, long polls
    /// included, are aborted); the state is kept. Afterwards connections are refused.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Serves again on the same port with the same state (stopping first if running).
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        let listener = bind(self.addr)?;
        self.server = Some(Server::spawn(
            listener,
            routes::router(Arc::clone(&self.app)),
        ));
        Ok(())
    }

    /// Test hook: the next `n` requests (any route) answer 503 without side effects.
    pub fn fail_next(&self, n: usize) {
        self.app.fail_next.store(n, Ordering::SeqCst);
    }

    /// Number of HTTP requests served so far, across restarts.
    pub fn requests(&self) -> u64 {
        self.app.requests.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for ServiceBusDouble {
    /// Leaves the queues out: they may hold many messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusDouble")
            .field("endpoint", &self.app.endpoint())
            .field("key_name", &self.options.key_name)
            .field("running", &self.server.is_some())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Drop for ServiceBusDouble {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Aborting the accept loop drops its listener and its JoinSet, which aborts every
            // connection task.
            server.shutdown.cancel();
            server.task.abort();
        }
    }
}

/// Binds with `SO_REUSEADDR`, so `restart` can rebind while old connections sit in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// One incarnation of the HTTP server: an accept loop owning its connections.
#[derive(Debug)]
struct Server {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    fn spawn(listener: TcpListener, router: Router) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(accept_until_stopped(listener, router, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Returns once the listener is closed and every connection task has ended.
    async fn stop(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "service bus double: accept loop panicked");
        }
    }
}

/// Accepts connections until `shutdown`, then closes the listener and aborts (and awaits)
/// every connection. axum's graceful shutdown would instead wait for in-flight long polls.
async fn accept_until_stopped(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "service bus double: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router) {
    // Small request/response exchanges: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(router);
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "service bus double: connection ended with an error");
    }
}
