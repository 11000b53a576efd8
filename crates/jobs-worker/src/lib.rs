//! The worker: receives work items under a peek-lock, dispatches each to the processor of
//! its kind, records the outcome in the job store, and — when an item completes its job —
//! triggers and runs the job's finalization (fan-in).
//!
//! [`try_process_next`] is one testable step: receive at most one message and deal with it
//! completely. [`run_until_stopped`] runs `worker.concurrency` such loops until shut down
//! (the shared loop of `jobs_queue::consume`), plus the dead-letter sweep.
//!
//! What happens to a message:
//! - it does not decode → dead-lettered at once ("MalformedEnvelope"), never retried;
//! - its job is cancelled → the item is counted skipped, the message completed;
//! - processing succeeds → the item is completed in the store (once, however often this
//!   runs), then the message is completed;
//! - a `Retryable` error → the attempt is recorded and the message abandoned with back-off;
//!   on its last permitted delivery the item is counted failed and the message
//!   dead-lettered, so the job still finishes;
//! - a `Fatal` error → the item is counted failed and the message dead-lettered at once.
//!
//! While an item is processed its lock is renewed every half lock duration, so long parts
//! are not delivered twice.

mod handle;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::store::{JobStore, StoreError};
use jobs_queue::messages::Queues;
use jobs_queue::{QueueError, Transport};
use tokio_util::sync::CancellationToken;

pub use handle::process_message;
pub use jobs_sdk::{Finalizer, KindEnv, Processor, Registry, item_outputs, job_params};

/// Everything a worker step needs. Built once at start, shared by all loops.
#[derive(Debug)]
pub struct WorkerContext {
    /// What the kinds' processors and finalizers see: the pool, the blob store, the
    /// catalog and the configuration.
    pub env: KindEnv,
    pub store: JobStore,
    pub transport: Arc<dyn Transport>,
    pub queues: Queues,
    pub registry: Registry,
    pub settings: WorkerSettings,
}

impl jobs_queue::consume::Consumer for WorkerContext {
    fn transport(&self) -> &dyn jobs_queue::Transport {
        self.transport.as_ref()
    }

    fn db(&self) -> &jobs_core::sqlx::PgPool {
        self.store.pool()
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// The work queue's max delivery count: the delivery on which a retryable failure
    /// becomes final.
    pub max_delivery_count: u32,
    /// The work queue's lock duration: locks are renewed at half of it.
    pub lock_duration: Duration,
    /// The longest delay before a retry, a processor's `retry_after` included.
    pub max_delay: Duration,
    /// How long an item being processed at shutdown may take before it is given back.
    pub shutdown_grace: Duration,
}

impl WorkerSettings {
    pub fn from_config(cfg: &jobs_core::Config) -> Self {
        Self {
            concurrency: cfg.worker.concurrency,
            retry_base: cfg.worker.retry_base(),
            retry_cap: cfg.worker.retry_cap(),
            max_delivery_count: cfg.queue.max_delivery_count,
            lock_duration: cfg.queue.lock_duration(),
            max_delay: cfg.queue.max_delay(),
            shutdown_grace: cfg.queue.shutdown_grace(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("job store: {0}")]
    Store(#[from] StoreError),
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A message was received and dealt with (whatever the result of processing).
    Processed,
    /// No message arrived within the wait.
    Empty,
}

/// Receives at most one work message (waiting up to `wait`) and deals with it completely.
pub async fn try_process_next(ctx: &WorkerContext, wait: Duration) -> Result<Outcome, WorkerError> {
    let mut got = ctx.transport.receive(&ctx.queues.work, 1, wait).await?;
    let Some(msg) = got.pop() else {
        return Ok(Outcome::Empty);
    };
    process_message(ctx, msg).await?;
    Ok(Outcome::Processed)
}

/// Runs `concurrency` receive loops until `shutdown` is cancelled; a message being
/// processed when that happens is finished first.
pub async fn run_until_stopped(ctx: Arc<WorkerContext>, shutdown: CancellationToken) {
    let sweeper = {
        let (ctx, transport, queue, stop) = (
            ctx.clone(),
            ctx.transport.clone(),
            ctx.queues.work.clone(),
            shutdown.clone(),
        );
        let pool = ctx.store.pool().clone();
        tokio::spawn(async move {
            let handle = move |dead| {
                let ctx = ctx.clone();
                async move { handle::handle_dead_letter(&ctx, dead).await }
            };
            jobs_queue::consume::sweep_dead_letters_until_stopped(
                "worker", transport, pool, queue, stop, handle,
            )
            .await;
        })
    };
    let (transport, queue, n, grace) = (
        ctx.transport.clone(),
        ctx.queues.work.clone(),
        ctx.settings.concurrency,
        ctx.settings.shutdown_grace,
    );
    jobs_queue::consume::consume_until_stopped(
        "worker",
        transport,
        queue,
        n,
        grace,
        shutdown,
        move |msg| {
            let ctx = ctx.clone();
            async move { process_message(&ctx, msg).await }
        },
    )
    .await;
    let _ = sweeper.await;
}
