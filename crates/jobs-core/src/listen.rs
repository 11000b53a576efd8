//! A supervised `LISTEN` on one Postgres channel, for the processes that wake on
//! notifications (queue receivers, the API's job event streams).
//!
//! The first connection is made before [`spawn_listener`] returns, so a failure shows at
//! start-up. The task is then supervised ([`crate::supervise`]): if it dies it starts again
//! on a new connection. Whenever notifications may have been missed (the connection was
//! lost, or could not be made) the callback is told so with [`Notice::Gap`], so that
//! whoever waits looks for themselves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What a listener hands its callback.
#[derive(Debug)]
pub enum Notice<'a> {
    /// A notification's payload.
    Payload(&'a str),
    /// Notifications may have been missed.
    Gap,
}

/// How long a failed listener waits before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Listens on `channel` until `stop`, handing every notice to `on`.
pub async fn spawn_listener<F>(
    name: &'static str,
    pool: &PgPool,
    channel: &'static str,
    stop: CancellationToken,
    on: F,
) -> Result<(), sqlx::Error>
where
    F: Fn(Notice<'_>) + Send + Sync + 'static,
{
    let first = Arc::new(Mutex::new(Some(listen(pool, channel).await?)));
    let (pool, on, shutdown) = (pool.clone(), Arc::new(on), stop.clone());
    crate::supervise::spawn_supervised(name, shutdown, move || {
        let (pool, on, stop) = (pool.clone(), on.clone(), stop.clone());
        let connected = first.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            let listener = match connected {
                Some(l) => l,
                None => loop {
                    match listen(&pool, channel).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::warn!(listener = name, error = %e, "cannot connect; retrying");
                            on(Notice::Gap);
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = tokio::time::sleep(RETRY) => {}
                            }
                        }
                    }
                },
            };
            feed_until_stopped(name, listener, on.as_ref(), &stop).await;
        }
    });
    Ok(())
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

async fn feed_until_stopped(
    name: &str,
    mut listener: PgListener,
    on: &(dyn Fn(Notice<'_>) + Send + Sync),
    stop: &CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            n = listener.try_recv() => n,
        };
        match next {
            Ok(Some(n)) => on(Notice::Payload(n.payload())),
            // The connection was lost and is being re-established.
            Ok(None) => on(Notice::Gap),
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "listener failed; retrying");
                on(Notice::Gap);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
