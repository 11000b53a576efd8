//! The receive loop every service runs: take one message at a time from a queue and hand it
//! to a handler, `concurrency` loops at once, until shut down.
//!
//! Shutdown interrupts waiting for a message, never handling one: a message being handled
//! when shutdown comes is finished (and settled) first. A failing step (the queue or the
//! database unreachable) pauses that loop with a growing, jittered back-off instead of
//! spinning.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{QueueError, QueueName, ReceivedMessage, Transport};
use crate::process::backoff;

/// How long an idle loop waits for a message before looking again.
pub const RECEIVE_WAIT: Duration = Duration::from_secs(5);

/// Runs `concurrency` receive loops on `queue` until `shutdown` is cancelled, handing each
/// message to `handle`.
pub async fn consume_until_stopped<H, Fut, E>(
    name: &'static str,
    transport: Arc<dyn Transport>,
    queue: QueueName,
    concurrency: usize,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(ReceivedMessage) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display + From<QueueError> + Send,
{
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (transport, queue, shutdown, handle) = (
            transport.clone(),
            queue.clone(),
            shutdown.clone(),
            handle.clone(),
        );
        loops.spawn(async move {
            let mut failures = 0u32;
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = transport.receive(&queue, 1, RECEIVE_WAIT) => r,
                };
                let step = match received {
                    Ok(mut msgs) => match msgs.pop() {
                        Some(msg) => handle(msg).await,
                        None => Ok(()),
                    },
                    Err(e) => Err(E::from(e)),
                };
                match step {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        let pause = backoff(
                            failures,
                            Duration::from_millis(200),
                            Duration::from_secs(10),
                        );
                        tracing::warn!(service = name, error = %e, ?pause, "step failed; pausing");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        });
    }
    while loops.join_next().await.is_some() {}
}
