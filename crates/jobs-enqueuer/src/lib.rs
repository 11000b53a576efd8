//! The enqueuer: receives `job.requested`, plans the job into work items, records the plan
//! and sends the items (fan-out). It also fires schedules ([`schedules`]) and deletes
//! expired uploads ([`uploads`]).
//!
//! Safe to crash anywhere and to receive the same request twice: the plan is recorded in
//! the job store *before* any item is sent, a redelivered request re-sends the recorded
//! items (never a new plan), and item message ids are deterministic, so the queue drops
//! the copies.

pub mod schedules;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::JobStatus;
use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::process::backoff;
use jobs_core::schedule::ScheduleError;
use jobs_core::store::{ItemStatus, Job, JobStore, PlanOutcome, PlannedItem, StoreError};
use jobs_core::supervise::spawn_supervised;
use jobs_queue::consume::Consumer;
use jobs_queue::messages::WorkItemMessage as _;
use jobs_queue::messages::{JobMessage, Queues};
use jobs_queue::outbox::TxSender;
use jobs_queue::{DeadLetter, OutgoingMessage, QueueError, ReceivedMessage, Transport};
use jobs_sdk::jobtype::{JobTypes, KindEnv, PlanError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Items sent per batch.
const SEND_BATCH: usize = 500;

#[derive(Debug)]
pub struct EnqueuerContext {
    pub store: JobStore,
    pub transport: Arc<dyn Transport>,
    pub queues: Queues,
    /// The planners, by job kind.
    pub job_types: JobTypes,
    pub env: KindEnv,
    /// The jobs queue's max delivery count: a plan that keeps failing for transient reasons
    /// fails the job on its last delivery.
    pub max_delivery_count: u32,
    /// Writes a fired schedule's job message in the transaction that creates the job.
    pub tx_sender: TxSender,
}

impl Consumer for EnqueuerContext {
    fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    fn db(&self) -> &jobs_core::sqlx::PgPool {
        self.store.pool()
    }
}

impl EnqueuerContext {
    /// Everything from the runtime, planning `job_types`.
    pub fn from_runtime(rt: &jobs_queue::runtime::Runtime, job_types: JobTypes) -> Self {
        Self {
            store: rt.store.clone(),
            transport: rt.transport.clone(),
            queues: rt.queues.clone(),
            job_types,
            env: rt.kind_env(),
            max_delivery_count: rt.cfg.queue.max_delivery_count,
            tx_sender: rt.tx_sender.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueuerError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    #[error("schedules: {0}")]
    Schedule(#[from] ScheduleError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Empty,
}

/// Receives at most one job message (waiting up to `wait`) and handles it completely.
pub async fn try_plan_next(
    ctx: &EnqueuerContext,
    wait: Duration,
) -> Result<Outcome, EnqueuerError> {
    let mut got = ctx.transport.receive(&ctx.queues.jobs, 1, wait).await?;
    let Some(msg) = got.pop() else {
        return Ok(Outcome::Empty);
    };
    handle_message(ctx, msg).await?;
    Ok(Outcome::Processed)
}

pub async fn handle_message(
    ctx: &EnqueuerContext,
    msg: ReceivedMessage,
) -> Result<(), EnqueuerError> {
    let q = &ctx.queues.jobs;
    let (job_id, correlation_id, trace) = match JobMessage::decode(&msg.body) {
        Ok(JobMessage::Requested {
            job_id,
            correlation_id,
            trace,
        }) => (job_id, correlation_id, trace),
        Ok(other) => {
            let why = format!("the jobs queue does not take {}", other.message_id());
            return settle(ctx.reject(q, &msg, "UnexpectedMessage", &why).await);
        }
        Err(e) => {
            return settle(
                ctx.reject(q, &msg, "MalformedMessage", &e.to_string())
                    .await,
            );
        }
    };
    let span = tracing::info_span!("plan", %job_id, %correlation_id, delivery = msg.delivery_count);
    trace.attach_to(&span);
    async {
        let job = match ctx.store.get_any(job_id).await {
            Ok(job) => job,
            Err(StoreError::UnknownJob(id)) => {
                let why = format!("job {id} does not exist");
                return settle(ctx.reject(q, &msg, "UnknownJob", &why).await);
            }
            Err(e) => return Err(e.into()),
        };
        match plan_job(ctx, &job, &correlation_id, &trace).await {
            Ok(()) => settle(ctx.transport.complete(q, &msg.lock).await),
            Err(PlanError::Retryable(why)) if msg.delivery_count < ctx.max_delivery_count => {
                let delay = backoff(
                    msg.delivery_count,
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                );
                tracing::warn!(%why, ?delay, "planning failed; will retry");
                settle(ctx.transport.abandon(q, &msg.lock, delay).await)
            }
            Err(PlanError::Retryable(why) | PlanError::Fatal(why)) => {
                tracing::warn!(%why, "planning failed; the job fails");
                match ctx.store.fail(job.id, &why).await? {
                    Some(_) => announce(ctx, job.id, JobStatus::Failed, &trace).await?,
                    // It moved meanwhile: a job cancelled while planning ends cancelled.
                    None => {
                        let now = ctx.store.get_any(job.id).await?;
                        if now.status == JobStatus::Cancelling && now.progress.total.is_none() {
                            if ctx
                                .store
                                .transition(job.id, JobStatus::Cancelled)
                                .await?
                                .is_some()
                            {
                                announce(ctx, job.id, JobStatus::Cancelled, &trace).await?;
                            }
                        } else if now.status.is_terminal() {
                            announce(ctx, job.id, now.status, &trace).await?;
                        }
                    }
                }
                settle(ctx.transport.complete(q, &msg.lock).await)
            }
        }
    }
    .instrument(span)
    .await
}

/// Sends the job's finished event (again: the deterministic message id makes a repeat
/// harmless, and repeating it repairs a send cut short by a crash).
async fn announce(
    ctx: &EnqueuerContext,
    job_id: jobs_core::JobId,
    status: JobStatus,
    trace: &TraceContext,
) -> Result<(), QueueError> {
    let event = JobMessage::Finished {
        job_id,
        status,
        trace: trace.clone(),
    };
    ctx.transport
        .send(&ctx.queues.events, &[event.to_message()])
        .await
        .map(|_| ())
}

fn settle(r: Result<(), QueueError>) -> Result<(), EnqueuerError> {
    match r {
        Ok(()) | Err(QueueError::LockLost { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn plan_job(
    ctx: &EnqueuerContext,
    job: &Job,
    correlation_id: &str,
    trace: &TraceContext,
) -> Result<(), PlanError> {
    let store_err = |e: StoreError| PlanError::Retryable(e.to_string());
    let items = match job.status {
        JobStatus::Queued | JobStatus::Planning => {
            if job.status == JobStatus::Queued
                && ctx
                    .store
                    .transition(job.id, JobStatus::Planning)
                    .await
                    .map_err(store_err)?
                    .is_none()
            {
                // Cancelled meanwhile.
                return Ok(());
            }
            let plan = make_plan(ctx, job).await?;
            match ctx
                .store
                .record_plan(job.id, &plan)
                .await
                .map_err(store_err)?
            {
                PlanOutcome::Started => plan,
                PlanOutcome::StartedEmpty => Vec::new(),
                PlanOutcome::NotPlanning(JobStatus::Running) => recorded(ctx, job).await?,
                PlanOutcome::NotPlanning(JobStatus::Cancelling) => {
                    return cancel_unplanned(ctx, job, trace).await;
                }
                PlanOutcome::NotPlanning(_) => return Ok(()),
            }
        }
        // A redelivered request: re-send exactly the recorded items. A job cancelled after
        // its plan was recorded gets them too: workers count them skipped, which is what
        // ends the job (an item never sent would keep it `cancelling` for ever).
        JobStatus::Running => recorded(ctx, job).await?,
        JobStatus::Cancelling if job.progress.total.is_some() => recorded(ctx, job).await?,
        JobStatus::Cancelling if job.progress.total.is_none() => {
            return cancel_unplanned(ctx, job, trace).await;
        }
        // Finished already: repeat the announcement, in case the first send was lost.
        status if status.is_terminal() => {
            return announce(ctx, job.id, status, trace)
                .await
                .map_err(|e| PlanError::Retryable(e.to_string()));
        }
        _ => return Ok(()),
    };
    tracing::info!(items = items.len(), "plan recorded; sending items");
    let total = items.len() as u32;
    let mut messages: Vec<OutgoingMessage> = Vec::with_capacity(items.len().max(1));
    for p in items {
        let item = WorkItem {
            job_id: job.id,
            seq: p.seq,
            kind: p.kind,
            payload: p.payload,
            correlation_id: correlation_id.to_owned(),
            trace: trace.clone(),
        };
        messages.push(
            item.to_message()
                .map_err(|e| PlanError::Fatal(e.to_string()))?,
        );
    }
    if total == 0 {
        // Nothing to process: go straight to finalization.
        let finalize = WorkItem {
            job_id: job.id,
            seq: 0,
            kind: job_type(ctx, job)?.finalize_kind(),
            payload: serde_json::json!({}),
            correlation_id: correlation_id.to_owned(),
            trace: trace.clone(),
        };
        messages.push(
            finalize
                .to_message()
                .map_err(|e| PlanError::Fatal(e.to_string()))?,
        );
    }
    for batch in messages.chunks(SEND_BATCH) {
        ctx.transport
            .send(&ctx.queues.work, batch)
            .await
            .map_err(|e| PlanError::Retryable(format!("sending items: {e}")))?;
    }
    Ok(())
}

/// A job cancelled before its plan was recorded: no item exists to complete it, so it
/// ends here.
async fn cancel_unplanned(
    ctx: &EnqueuerContext,
    job: &Job,
    trace: &TraceContext,
) -> Result<(), PlanError> {
    let moved = ctx
        .store
        .transition(job.id, JobStatus::Cancelled)
        .await
        .map_err(|e| PlanError::Retryable(e.to_string()))?;
    // Announce even when someone else moved it: a repeat is harmless, a gap is not.
    let now = match moved {
        Some(j) => j.status,
        None => {
            ctx.store
                .get_any(job.id)
                .await
                .map_err(|e| PlanError::Retryable(e.to_string()))?
                .status
        }
    };
    if now == JobStatus::Cancelled {
        announce(ctx, job.id, JobStatus::Cancelled, trace)
            .await
            .map_err(|e| PlanError::Retryable(e.to_string()))?;
    }
    Ok(())
}

async fn recorded(ctx: &EnqueuerContext, job: &Job) -> Result<Vec<PlannedItem>, PlanError> {
    let items = ctx
        .store
        .items(job.id)
        .await
        .map_err(|e| PlanError::Retryable(e.to_string()))?;
    Ok(items
        .into_iter()
        .filter(|i| i.status == ItemStatus::Pending)
        .map(|i| i.item)
        .collect())
}

fn job_type<'a>(
    ctx: &'a EnqueuerContext,
    job: &Job,
) -> Result<&'a std::sync::Arc<dyn jobs_sdk::jobtype::JobType>, PlanError> {
    ctx.job_types
        .get(&job.kind)
        .ok_or_else(|| PlanError::Fatal(format!("job kind `{}` has no planner", job.kind)))
}

async fn make_plan(ctx: &EnqueuerContext, job: &Job) -> Result<Vec<PlannedItem>, PlanError> {
    job_type(ctx, job)?.plan(job, &ctx.env).await
}

/// Plan requests that reached the dead-letter queue by themselves (the lock expired on
/// their last permitted delivery, say because the enqueuer died each time) fail their job,
/// which would otherwise stay `queued` or `planning` for ever. Idempotent: a job that
/// already left those statuses is not touched.
pub async fn handle_dead_letter(
    ctx: &EnqueuerContext,
    dead: DeadLetter,
) -> Result<(), EnqueuerError> {
    let Ok(JobMessage::Requested { job_id, trace, .. }) = JobMessage::decode(&dead.body) else {
        return Ok(());
    };
    let job = match ctx.store.get_any(job_id).await {
        Ok(job) => job,
        Err(StoreError::UnknownJob(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if matches!(job.status, JobStatus::Queued | JobStatus::Planning) {
        let why = format!(
            "planning was dead-lettered: {}",
            dead.description.as_deref().unwrap_or(&dead.reason)
        );
        if ctx.store.fail(job.id, &why).await?.is_some() {
            announce(ctx, job.id, JobStatus::Failed, &trace).await?;
        }
    }
    Ok(())
}

/// Plans jobs, fires schedules and deletes expired uploads until `shutdown` is cancelled,
/// sweeping the jobs queue's dead letters.
pub async fn run_until_stopped(ctx: Arc<EnqueuerContext>, shutdown: CancellationToken) {
    let schedules = {
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        spawn_supervised("enqueuer: schedules", shutdown.clone(), move || {
            schedules::fire_until_stopped(ctx.clone(), stop.clone())
        })
    };
    let uploads = {
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        spawn_supervised("enqueuer: upload sweep", shutdown.clone(), move || {
            uploads::sweep_until_stopped(ctx.clone(), stop.clone())
        })
    };
    let sweeper = {
        let (ctx, transport, queue, stop) = (
            ctx.clone(),
            ctx.transport.clone(),
            ctx.queues.jobs.clone(),
            shutdown.clone(),
        );
        let pool = ctx.store.pool().clone();
        tokio::spawn(async move {
            let handle = move |dead| {
                let ctx = ctx.clone();
                async move { handle_dead_letter(&ctx, dead).await }
            };
            jobs_queue::consume::sweep_dead_letters_until_stopped(
                "enqueuer", transport, pool, queue, stop, handle,
            )
            .await;
        })
    };
    plan_until_stopped(ctx, shutdown).await;
    let _ = sweeper.await;
    let _ = schedules.await;
    let _ = uploads.await;
}

async fn plan_until_stopped(ctx: Arc<EnqueuerContext>, shutdown: CancellationToken) {
    let (transport, queue) = (ctx.transport.clone(), ctx.queues.jobs.clone());
    jobs_queue::consume::consume_until_stopped(
        "enqueuer",
        transport,
        queue,
        1,
        ctx.env.cfg.queue.shutdown_grace(),
        shutdown,
        move |msg| {
            let ctx = ctx.clone();
            async move { handle_message(&ctx, msg).await }
        },
    )
    .await;
}
