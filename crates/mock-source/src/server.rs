//! [`MockSource`]: a running mock source on a loopback port, stopped when dropped.

use std::future::IntoFuture;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::routes::{AppState, router};
use crate::{MockSourceOptions, Stats};

/// A mock source serving on a loopback address, in a task of the current tokio runtime.
///
/// Dropping it starts a graceful shutdown (requests in flight finish, then the task ends);
/// [`MockSource::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct MockSource {
    addr: SocketAddr,
    /// Shared with every request handler; read here for [`MockSource::stats`].
    state: Arc<AppState>,
    /// Cancelled on drop or `shutdown`: stops accepting and drains connections.
    stop: CancellationToken,
    /// The serving task; taken by `shutdown` to wait for it.
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockSource {
    /// Starts a source on `127.0.0.1` on a free port.
    pub async fn start(opts: MockSourceOptions) -> io::Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts).await
    }

    /// Starts a source on `addr`, which must be a loopback address (port 0 picks a free
    /// port). Fails with `InvalidInput` for invalid options or a non-loopback address.
    pub async fn start_on(addr: SocketAddr, opts: MockSourceOptions) -> io::Result<Self> {
        opts.validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the mock source binds to loopback addresses only, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState::new(opts, format!("http://{addr}"))?);
        let stop = CancellationToken::new();
        let serve = axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future();
        Ok(Self {
            addr,
            state,
            stop,
            task: Some(tokio::spawn(serve)),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// The address the source listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The options the source runs with, e.g. to regenerate expected records with
    /// [`record`](crate::record).
    pub fn options(&self) -> &MockSourceOptions {
        &self.state.opts
    }

    /// The counters, as `GET /stats` reports them.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// Zeroes the counters, as `POST /stats/reset` does.
    pub fn reset_stats(&self) {
        self.state.counters.reset();
    }

    /// Stops accepting connections, lets requests in flight finish, and waits until the
    /// source has stopped.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for MockSource {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
