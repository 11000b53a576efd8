//! Waking idle consumers: `LISTEN/NOTIFY` with polling as the fallback.
//!
//! Every statement that makes messages receivable now runs `pg_notify('offload_queue',
//! <queue>)`; one listener connection per process turns notifications into wake-ups of that
//! queue's waiting receivers. A notification can be lost (the listener reconnects, or
//! LISTEN is disabled for PgBouncer in transaction mode), so a waiting receiver also looks
//! again every poll interval: correctness never depends on a notification arriving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel all queues notify on; the payload is the queue name.
pub(super) const CHANNEL: &str = "offload_queue";

/// One `Notify` per queue with waiting receivers.
#[derive(Debug, Default)]
pub(super) struct Wakers {
    by_queue: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    pub(super) fn for_queue(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.by_queue.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }

    fn wake(&self, queue: &str) {
        let map = self.by_queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let map = self.by_queue.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }
}

/// Connects a listener now (so a failure shows at start-up) and spawns the task that feeds
/// `wakers` until `stop` is cancelled.
pub(super) async fn spawn_listener(
    pool: &PgPool,
    wakers: Arc<Wakers>,
    stop: CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => wakers.wake(n.payload()),
                // The connection was lost and is being re-established: notifications sent
                // meanwhile are gone, so let every waiter look for itself.
                Ok(None) => wakers.wake_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "queue listener failed; receivers fall back to polling until it reconnects");
                    wakers.wake_all();
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    });
    Ok(())
}
