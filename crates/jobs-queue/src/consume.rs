//! The loops every service runs: take one message at a time from a queue and hand it to a
//! handler, `concurrency` loops at once, until shut down; and sweep a queue's dead letters.
//!
//! Shutdown interrupts waiting for a message, never handling one: a message being handled
//! when shutdown comes is finished (and settled) first. A failing step (the queue or the
//! database unreachable) pauses that loop with a growing, jittered back-off instead of
//! spinning.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use sqlx::PgPool;
use sqlx::types::Json;

use super::{DeadLetter, QueueError, QueueName, ReceivedMessage, Transport};
use jobs_core::process::backoff;
use jobs_core::supervise::supervise;

/// Takes a message out of circulation with a reason: dead-letters it where the transport
/// can, otherwise (Service Bus's REST API) records it in `offload.parked_messages` and
/// completes it, so that nothing is lost and nothing loops.
pub async fn reject(
    transport: &dyn Transport,
    db: &PgPool,
    queue: &QueueName,
    msg: &ReceivedMessage,
    reason: &str,
    description: &str,
) -> Result<(), QueueError> {
    if transport.capabilities().dead_letter {
        return transport
            .dead_letter(queue, &msg.lock, reason, description)
            .await;
    }
    let parked = DeadLetter {
        sequence: msg.lock.sequence,
        message_id: msg.message_id.clone(),
        body: msg.body.clone(),
        properties: msg.properties.clone(),
        delivery_count: msg.delivery_count,
        enqueued_at: msg.enqueued_at,
        reason: reason.to_owned(),
        description: Some(description.to_owned()),
        dead_lettered_at: chrono::Utc::now(),
    };
    park(db, queue, &parked).await?;
    // Parked before completed: a crash in between brings the message back, to be parked
    // again (a second row, never a lost message).
    transport.complete(queue, &msg.lock).await
}

/// A service that consumes a queue: its transport, and the database that parks what the
/// transport cannot dead-letter. Gives its handlers [`Consumer::reject`].
#[async_trait::async_trait]
pub trait Consumer: Sync {
    fn transport(&self) -> &dyn Transport;
    fn db(&self) -> &PgPool;

    /// [`reject`] through this service's transport and database.
    async fn reject(
        &self,
        queue: &QueueName,
        msg: &ReceivedMessage,
        reason: &str,
        description: &str,
    ) -> Result<(), QueueError> {
        reject(self.transport(), self.db(), queue, msg, reason, description).await
    }
}

/// How long an idle loop waits for a message before looking again.
pub const RECEIVE_WAIT: Duration = Duration::from_secs(5);
/// At shutdown, how long past [`RECEIVE_WAIT`] a receive under way may take before it is
/// dropped (a transport that hangs); what it locked then returns when its lock expires.
pub const RECEIVE_STRAGGLE: Duration = Duration::from_secs(30);

/// Runs `concurrency` receive loops on `queue` until `shutdown` is cancelled, handing each
/// message to `handle`.
///
/// At shutdown a loop receives nothing more: a receive under way stops waiting
/// ([`Transport::receive_until`]) but is never dropped while it may be locking a message,
/// and a message it brings is abandoned at once (no delay), so another consumer takes it
/// without waiting for the lock to expire. A message being handled gets `grace`
/// to finish; past that its handling is dropped and the message abandoned the same way
/// (handlers are idempotent: the next delivery does it again).
///
/// A handler that panics on a message (a bug, a remote answer no one foresaw) is logged
/// with the panic's text, and the message is given back with a back-off: the loop goes on,
/// and a message that always panics is dead-lettered when its deliveries run out. Each
/// loop is supervised as well ([`jobs_core::supervise`]): one that fails outside a handler is
/// started again.
pub async fn consume_until_stopped<H, Fut, E>(
    name: &'static str,
    transport: Arc<dyn Transport>,
    queue: QueueName,
    concurrency: usize,
    grace: Duration,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(ReceivedMessage) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + From<QueueError> + Send + 'static,
{
    let liveness = jobs_core::supervise::Liveness::process();
    let mut loops = tokio::task::JoinSet::new();
    for i in 0..concurrency.max(1) {
        let one = ReceiveLoop {
            name,
            transport: transport.clone(),
            queue: queue.clone(),
            grace,
            shutdown: shutdown.clone(),
        };
        let handle = handle.clone();
        let label = format!("{name}: receive loop {i} on {queue}");
        let liveness = liveness.clone();
        loops.spawn(async move {
            let stop = one.shutdown.clone();
            supervise(&label, &liveness, &stop, move || {
                one.clone().run_until_stopped(handle.clone())
            })
            .await;
        });
    }
    while loops.join_next().await.is_some() {}
}

/// One receive loop of [`consume_until_stopped`].
#[derive(Clone)]
struct ReceiveLoop {
    name: &'static str,
    transport: Arc<dyn Transport>,
    queue: QueueName,
    grace: Duration,
    shutdown: CancellationToken,
}

impl ReceiveLoop {
    async fn run_until_stopped<H, Fut, E>(self, handle: H)
    where
        H: Fn(ReceivedMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display + From<QueueError>,
    {
        let mut failures = 0u32;
        while let Some(received) = self.receive().await {
            let step = match received {
                Ok(mut msgs) => match msgs.pop() {
                    Some(msg) => self.handle_within_grace(&handle, msg).await,
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
                    tracing::warn!(service = self.name, error = %e, ?pause, "step failed; pausing");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// The next receive's answer; `None` at shutdown (what a receive under way brought
    /// then is given back).
    async fn receive(&self) -> Option<Result<Vec<ReceivedMessage>, QueueError>> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let receiving = self
            .transport
            .receive_until(&self.queue, 1, RECEIVE_WAIT, &self.shutdown);
        tokio::pin!(receiving);
        let received = tokio::select! {
            r = &mut receiving => r,
            () = self.shutdown.cancelled() => {
                match tokio::time::timeout(RECEIVE_WAIT + RECEIVE_STRAGGLE, receiving).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(
                            service = self.name,
                            queue = %self.queue,
                            "shutting down: a receive did not answer; a message it locked returns when its lock expires"
                        );
                        return None;
                    }
                }
            }
        };
        if !self.shutdown.is_cancelled() {
            return Some(received);
        }
        if let Ok(msgs) = received {
            for msg in msgs {
                self.give_back(&msg.lock).await;
            }
        }
        None
    }

    /// Handles `msg`; at shutdown, gives the handler `grace` to finish, then gives the
    /// message back. A handler that panics gives its message back too (after a back-off).
    async fn handle_within_grace<H, Fut, E>(
        &self,
        handle: &H,
        msg: ReceivedMessage,
    ) -> Result<(), E>
    where
        H: Fn(ReceivedMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let (lock, delivery_count) = (msg.lock, msg.delivery_count);
        let handling = std::panic::AssertUnwindSafe(handle(msg)).catch_unwind();
        tokio::pin!(handling);
        let grace_over = async {
            self.shutdown.cancelled().await;
            tokio::time::sleep(self.grace).await;
        };
        tokio::select! {
            handled = &mut handling => match handled {
                Ok(r) => r,
                Err(panic) => {
                    let text = jobs_core::supervise::panic_text(panic.as_ref());
                    self.give_back_after_panic(&lock, delivery_count, &text).await;
                    Ok(())
                }
            },
            () = grace_over => {
                tracing::warn!(
                    service = self.name,
                    sequence = lock.sequence,
                    grace = ?self.grace,
                    "shutting down: a message still being handled is given back"
                );
                self.give_back(&lock).await;
                Ok(())
            }
        }
    }

    /// A handler's bug met by this message: logged with the panic's text, and the message
    /// given back after a back-off, so the loop goes on and a message that always panics is
    /// dead-lettered when its deliveries run out.
    async fn give_back_after_panic(
        &self,
        lock: &super::LockToken,
        delivery_count: u32,
        panic: &str,
    ) {
        let delay = backoff(
            delivery_count,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        tracing::error!(
            service = self.name,
            sequence = lock.sequence,
            delivery_count,
            panic,
            ?delay,
            "handling a message panicked; it is given back"
        );
        self.give_back_after(lock, delay).await;
    }

    /// Abandons a message with no delay, so that another consumer takes it now.
    async fn give_back(&self, lock: &super::LockToken) {
        self.give_back_after(lock, Duration::ZERO).await;
    }

    async fn give_back_after(&self, lock: &super::LockToken, delay: Duration) {
        match self.transport.abandon(&self.queue, lock, delay).await {
            Ok(()) | Err(QueueError::LockLost { .. }) => {}
            Err(e) => tracing::warn!(
                service = self.name,
                error = %e,
                "giving a message back failed; it returns when its lock expires"
            ),
        }
    }
}

/// Records a message taken out of circulation in `offload.parked_messages`.
pub async fn park(db: &PgPool, queue: &QueueName, dead: &DeadLetter) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO offload.parked_messages
             (queue, message_id, body, properties, delivery_count, reason, description)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(queue.as_str())
    .bind(&dead.message_id)
    .bind(dead.body.as_ref())
    .bind(Json(&dead.properties))
    .bind(i32::try_from(dead.delivery_count).unwrap_or(i32::MAX))
    .bind(&dead.reason)
    .bind(dead.description.as_deref().unwrap_or(""))
    .execute(db)
    .await?;
    Ok(())
}

/// How often a dead-letter sweep runs, and how often it reads every dead letter.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
pub const FULL_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Hands each dead letter of `queue` after sequence `after` to `handle`, oldest first;
/// returns the last sequence seen.
///
/// Where the transport cannot list dead letters without receiving them (Service Bus), each
/// is locked, recorded in `offload.parked_messages`, handled, and only then removed from
/// the dead-letter queue: the queue drains into Postgres, so a sweep costs what is new, and
/// a crash at any point leaves the dead letter to be swept again (`handle` is idempotent).
pub async fn sweep_dead_letters<H, Fut, E>(
    transport: &dyn Transport,
    db: &PgPool,
    queue: &QueueName,
    mut after: Option<i64>,
    handle: &H,
) -> Result<Option<i64>, E>
where
    H: Fn(DeadLetter) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<QueueError>,
{
    const PAGE: usize = 500;
    if !transport.capabilities().browse_dead_letters {
        const LOCKED: usize = 50;
        loop {
            let locked = transport.lock_dead_letters(queue, LOCKED).await?;
            let full = locked.len() == LOCKED;
            for (lock, dead) in locked {
                park(db, queue, &dead).await?;
                handle(dead).await?;
                match transport.complete_dead_letter(queue, &lock).await {
                    Ok(()) | Err(QueueError::LockLost { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !full {
                return Ok(after);
            }
        }
    }
    loop {
        let page = transport.peek_dead_letters(queue, after, PAGE).await?;
        let full = page.len() == PAGE;
        for dead in page {
            after = Some(dead.sequence);
            handle(dead).await?;
        }
        if !full {
            return Ok(after);
        }
    }
}

/// Sweeps the dead letters of `queue` until `shutdown`: every [`SWEEP_EVERY`] those after
/// the last one seen, and every [`FULL_SWEEP_EVERY`] all of them, because dead letters can
/// arrive out of sequence order (a lock that expires late). `handle` must be idempotent.
/// Supervised like the receive loops: a sweep that panics starts again with a full pass.
pub async fn sweep_dead_letters_until_stopped<H, Fut, E>(
    name: &'static str,
    transport: Arc<dyn Transport>,
    db: PgPool,
    queue: QueueName,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(DeadLetter) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + From<QueueError> + 'static,
{
    let label = format!("{name}: dead-letter sweep of {queue}");
    let stop = shutdown.clone();
    supervise(
        &label,
        &jobs_core::supervise::Liveness::process(),
        &stop,
        move || {
            sweep_until_stopped(
                name,
                transport.clone(),
                db.clone(),
                queue.clone(),
                shutdown.clone(),
                handle.clone(),
            )
        },
    )
    .await;
}

async fn sweep_until_stopped<H, Fut, E>(
    name: &'static str,
    transport: Arc<dyn Transport>,
    db: PgPool,
    queue: QueueName,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(DeadLetter) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display + From<QueueError>,
{
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    let (mut after, mut full_pass_at) = (None, tokio::time::Instant::now());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if tokio::time::Instant::now() >= full_pass_at {
            after = None;
            full_pass_at = tokio::time::Instant::now() + FULL_SWEEP_EVERY;
        }
        match sweep_dead_letters(transport.as_ref(), &db, &queue, after, &handle).await {
            Ok(last) => after = last.or(after),
            Err(e) => tracing::warn!(service = name, error = %e, "sweeping dead letters failed"),
        }
    }
}
