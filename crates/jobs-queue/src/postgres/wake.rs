//! Waking idle consumers: `LISTEN/NOTIFY` with polling as the fallback.
//!
//! Every statement that makes messages receivable now runs `pg_notify('offload_queue',
//! <queue>)`; one listener connection per process turns notifications into wake-ups of that
//! queue's waiting receivers. A notification can be lost (the listener reconnects, or
//! LISTEN is disabled for PgBouncer in transaction mode), so a waiting receiver also looks
//! again every poll interval: correctness never depends on a notification arriving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jobs_core::listen::Notice;
use sqlx::PgPool;
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
/// `wakers` until `stop` is cancelled. After a gap (the connection lost) every waiter looks
/// for itself: receivers fall back to polling until the listener is back.
pub(super) async fn spawn_listener(
    pool: &PgPool,
    wakers: Arc<Wakers>,
    stop: CancellationToken,
) -> Result<(), sqlx::Error> {
    jobs_core::listen::spawn_listener("queue listener", pool, CHANNEL, stop, move |n| match n {
        Notice::Payload(queue) => wakers.wake(queue),
        Notice::Gap => wakers.wake_all(),
    })
    .await
}
