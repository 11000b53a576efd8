//! Dealing with one received work message, start to finish.

use std::time::Duration;

use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::process::{ProcessError, backoff, panics_as_errors};
use jobs_core::store::{Completion, ItemOutcome, ItemStatus, Job};
use jobs_core::{JobId, JobStatus};
use jobs_queue::consume::Consumer as _;
use jobs_queue::messages::JobMessage;
use jobs_queue::messages::WorkItemMessage as _;
use jobs_queue::{DeadLetter, MAX_DELIVERY_REASON, QueueError, ReceivedMessage};
use tracing::Instrument;

use crate::{WorkerContext, WorkerError};

/// Deals with one received message completely: process, record, settle.
pub async fn process_message(ctx: &WorkerContext, msg: ReceivedMessage) -> Result<(), WorkerError> {
    let item = match WorkItem::decode(&msg.body) {
        Ok(item) => item,
        Err(e) => {
            tracing::warn!(message_id = %msg.message_id, error = %e, "dead-lettering a malformed work message");
            return settle(
                ctx,
                ctx.reject(&ctx.queues.work, &msg, "MalformedEnvelope", &e.to_string())
                    .await,
            );
        }
    };
    let span = tracing::info_span!(
        "work_item",
        job_id = %item.job_id,
        seq = item.seq,
        kind = %item.kind,
        delivery = msg.delivery_count,
        correlation_id = %item.correlation_id,
    );
    item.trace.attach_to(&span);
    handle(ctx, &msg, &item).instrument(span).await
}

/// A settle call whose lock was lost is not an error of this worker: the message will be
/// delivered again and handled then (every step is idempotent).
fn settle(_ctx: &WorkerContext, r: Result<(), QueueError>) -> Result<(), WorkerError> {
    match r {
        Ok(()) => Ok(()),
        Err(QueueError::LockLost { sequence }) => {
            tracing::info!(
                sequence,
                "lock lost before settling; the message will come back"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn handle(
    ctx: &WorkerContext,
    msg: &ReceivedMessage,
    item: &WorkItem,
) -> Result<(), WorkerError> {
    let queue = &ctx.queues.work;
    let job = match ctx.store.get_any(item.job_id).await {
        Ok(job) => job,
        Err(jobs_core::store::StoreError::UnknownJob(id)) => {
            let why = format!("job {id} does not exist");
            return settle(ctx, ctx.reject(queue, msg, "UnknownJob", &why).await);
        }
        Err(e) => return Err(e.into()),
    };

    if let Some(finalizer) = ctx.registry.finalizer(&item.kind) {
        let finalizer = finalizer.clone();
        return finalize(ctx, msg, item, &job, finalizer.as_ref()).await;
    }

    if matches!(job.status, JobStatus::Cancelling | JobStatus::Cancelled) {
        let c = ctx
            .store
            .complete_delivered_item(job.id, item.seq, msg.delivery_count, &ItemOutcome::Skipped)
            .await?;
        after_completion(ctx, &job, &c, &item.trace).await?;
        return settle(ctx, ctx.transport.complete(queue, &msg.lock).await);
    }
    if job.status.is_terminal() {
        // Nothing left to do for a finished job (a very late redelivery).
        return settle(ctx, ctx.transport.complete(queue, &msg.lock).await);
    }

    // Already completed (a redelivery after a lost `complete`): processing it again would
    // rewrite a part the job may be assembling. Repeat only the follow-up.
    if ctx
        .store
        .item_status(job.id, item.seq)
        .await?
        .is_some_and(|s| s != ItemStatus::Pending)
    {
        let c = Completion {
            counted: false,
            finished_job: None,
            job_status: job.status,
            progress: job.progress,
        };
        after_completion(ctx, &job, &c, &item.trace).await?;
        return settle(ctx, ctx.transport.complete(queue, &msg.lock).await);
    }

    let Some(processor) = ctx.registry.processor(&item.kind).cloned() else {
        let why = format!("no processor is registered for kind `{}`", item.kind);
        return fail_item(ctx, msg, item, &job, "UnknownKind", &why).await;
    };

    let result = with_lock_renewal(
        ctx,
        msg,
        panics_as_errors("the processor", processor.process(&ctx.env, &job, item)),
    )
    .await;
    match result {
        Ok(output) => {
            let c = ctx
                .store
                .complete_delivered_item(
                    job.id,
                    item.seq,
                    msg.delivery_count,
                    &ItemOutcome::Done { output },
                )
                .await?;
            after_completion(ctx, &job, &c, &item.trace).await?;
            settle(ctx, ctx.transport.complete(queue, &msg.lock).await)
        }
        Err(ProcessError::Fatal { reason } | ProcessError::JobFailed { reason, .. }) => {
            tracing::warn!(%reason, "work item failed for good");
            fail_item(ctx, msg, item, &job, "Fatal", &reason).await
        }
        Err(ProcessError::Retryable {
            reason,
            retry_after,
        }) => {
            if msg.delivery_count >= ctx.settings.max_delivery_count {
                tracing::warn!(%reason, "work item failed on its last permitted delivery");
                let why = format!("gave up after {} deliveries: {reason}", msg.delivery_count);
                return fail_item(ctx, msg, item, &job, MAX_DELIVERY_REASON, &why).await;
            }
            let delay = retry_delay(ctx, msg.delivery_count, retry_after);
            tracing::info!(%reason, ?delay, "work item will be retried");
            ctx.store
                .record_attempt(job.id, item.seq, msg.delivery_count, &reason)
                .await?;
            settle(ctx, ctx.transport.abandon(queue, &msg.lock, delay).await)
        }
    }
}

/// Counts the item failed and dead-letters its message with the reason.
async fn fail_item(
    ctx: &WorkerContext,
    msg: &ReceivedMessage,
    item: &WorkItem,
    job: &Job,
    reason: &str,
    description: &str,
) -> Result<(), WorkerError> {
    let outcome = ItemOutcome::Failed {
        reason: description.to_owned(),
    };
    let c = ctx
        .store
        .complete_delivered_item(job.id, item.seq, msg.delivery_count, &outcome)
        .await?;
    after_completion(ctx, job, &c, &item.trace).await?;
    let rejected = ctx.reject(&ctx.queues.work, msg, reason, description).await;
    settle(ctx, rejected)
}

/// The follow-up of a completion: a job now `finalizing` gets its finalize message, a job
/// now `cancelled` its finished event. Both are sent whenever the job is in that status,
/// not only by the completion that moved it there, because a crash between the store's
/// commit and the send must be repaired by the redelivery (duplicate detection drops
/// repeats).
async fn after_completion(
    ctx: &WorkerContext,
    job: &Job,
    c: &Completion,
    trace: &TraceContext,
) -> Result<(), WorkerError> {
    match c.job_status {
        JobStatus::Finalizing => {
            let Some(finalizer) = ctx.registry.finalizer_for_job(&job.kind) else {
                let why = format!("no finalizer is registered for job kind `{}`", job.kind);
                ctx.store.fail(job.id, &why).await?;
                return announce(ctx, job.id, JobStatus::Failed, trace).await;
            };
            let finalize = WorkItem {
                job_id: job.id,
                seq: c.progress.total.unwrap_or(0),
                kind: finalizer.finalize_kind(),
                payload: serde_json::json!({}),
                correlation_id: job.id.to_string(),
                trace: trace.clone(),
            };
            // After a retry of failed items the finalize message is a new one (the round
            // in its id), or duplicate detection would drop it as the first one's repeat.
            let round = ctx.store.retries(job.id).await?;
            let out =
                finalize
                    .to_message_in_round(round)
                    .map_err(|e| QueueError::InvalidMessage {
                        message_id: finalize.message_id(),
                        problem: e.to_string(),
                    })?;
            ctx.transport.send(&ctx.queues.work, &[out]).await?;
        }
        JobStatus::Cancelled => announce(ctx, job.id, JobStatus::Cancelled, trace).await?,
        _ => {}
    }
    Ok(())
}

/// Sends the job's finished event to the notifier.
pub(crate) async fn announce(
    ctx: &WorkerContext,
    job_id: JobId,
    status: JobStatus,
    trace: &TraceContext,
) -> Result<(), WorkerError> {
    let event = JobMessage::Finished {
        job_id,
        status,
        trace: trace.clone(),
    };
    let mut message = event.to_message();
    // A job finishing again after a retry of its failed items is a new event.
    let round = ctx.store.retries(job_id).await?;
    message.message_id = jobs_core::envelope::with_round(message.message_id, round);
    ctx.transport.send(&ctx.queues.events, &[message]).await?;
    Ok(())
}

async fn finalize(
    ctx: &WorkerContext,
    msg: &ReceivedMessage,
    item: &WorkItem,
    job: &Job,
    finalizer: &dyn crate::Finalizer,
) -> Result<(), WorkerError> {
    let queue = &ctx.queues.work;
    match job.status {
        JobStatus::Finalizing => {}
        // Already finished (a redelivered finalize): repeat the announcement and clean-up.
        JobStatus::Succeeded | JobStatus::Failed => {
            announce(ctx, job.id, job.status, &item.trace).await?;
            if job.status == JobStatus::Succeeded {
                let items = ctx.store.items(job.id).await?;
                finalizer.cleanup(&ctx.env, job, &items).await;
            }
            return settle(ctx, ctx.transport.complete(queue, &msg.lock).await);
        }
        _ => return settle(ctx, ctx.transport.complete(queue, &msg.lock).await),
    }
    let items = ctx.store.items(job.id).await?;
    let failed: Vec<_> = items
        .iter()
        .filter(|i| i.status == ItemStatus::Failed)
        .collect();
    if let Some(first) = failed.first() {
        // What failed, and what to do once its cause is fixed.
        let why = format!(
            "{} of {} parts failed; part {}: {}. Once the cause is fixed, \
             POST /v1/jobs/{}/retry-failed runs the failed parts again",
            failed.len(),
            items.len(),
            first.item.seq,
            first.last_error.as_deref().unwrap_or("no reason recorded"),
            job.id
        );
        ctx.store.fail(job.id, &why).await?;
        announce(ctx, job.id, JobStatus::Failed, &item.trace).await?;
        return settle(ctx, ctx.transport.complete(queue, &msg.lock).await);
    }
    let finalizing = panics_as_errors("the finalizer", finalizer.finalize(&ctx.env, job, &items));
    match with_lock_renewal(ctx, msg, finalizing).await {
        Ok(result) => {
            ctx.store.succeed(job.id, &result).await?;
            announce(ctx, job.id, JobStatus::Succeeded, &item.trace).await?;
            finalizer.cleanup(&ctx.env, job, &items).await;
            settle(ctx, ctx.transport.complete(queue, &msg.lock).await)
        }
        Err(ProcessError::Retryable {
            reason,
            retry_after,
        }) if msg.delivery_count < ctx.settings.max_delivery_count => {
            let delay = retry_delay(ctx, msg.delivery_count, retry_after);
            tracing::info!(%reason, ?delay, "finalization will be retried");
            settle(ctx, ctx.transport.abandon(queue, &msg.lock, delay).await)
        }
        Err(ProcessError::JobFailed { reason, result }) => {
            // A verdict of the job's kind, not a malfunction: nothing to dead-letter.
            tracing::info!(%reason, "the job failed by its kind's rule");
            ctx.store.fail_with_result(job.id, &reason, &result).await?;
            announce(ctx, job.id, JobStatus::Failed, &item.trace).await?;
            finalizer.cleanup(&ctx.env, job, &items).await;
            settle(ctx, ctx.transport.complete(queue, &msg.lock).await)
        }
        Err(e) => {
            let why = format!("finalization failed: {}", e.reason());
            ctx.store.fail(job.id, &why).await?;
            announce(ctx, job.id, JobStatus::Failed, &item.trace).await?;
            settle(ctx, ctx.reject(queue, msg, "FinalizeFailed", &why).await)
        }
    }
}

/// Runs `work` while renewing the message's lock every half lock duration.
async fn with_lock_renewal<T>(
    ctx: &WorkerContext,
    msg: &ReceivedMessage,
    work: impl std::future::Future<Output = T>,
) -> T {
    let every = (ctx.settings.lock_duration / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = ctx.transport.renew_lock(&ctx.queues.work, &msg.lock).await {
                    tracing::warn!(error = %e, "renewing the lock failed; the item may be delivered again");
                }
            }
        }
    }
}

/// Messages that reached the dead-letter queue by themselves (the lock expired on their last
/// permitted delivery — say the worker died) were never accounted for: an item is counted
/// failed so its job can still finish, and a finalize message fails its job. Swept with
/// `jobs_queue::consume`; only items still pending change anything, so it is
/// idempotent.
pub(crate) async fn handle_dead_letter(
    ctx: &WorkerContext,
    dead: DeadLetter,
) -> Result<(), WorkerError> {
    if dead.reason != MAX_DELIVERY_REASON {
        return Ok(());
    }
    let Ok(item) = WorkItem::decode(&dead.body) else {
        return Ok(());
    };
    let job = match ctx.store.get_any(item.job_id).await {
        Ok(job) => job,
        Err(jobs_core::store::StoreError::UnknownJob(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if ctx.registry.finalizer(&item.kind).is_some() {
        let why = format!(
            "finalization was dead-lettered after {} deliveries",
            dead.delivery_count
        );
        if ctx.store.fail(job.id, &why).await?.is_some() {
            announce(ctx, job.id, JobStatus::Failed, &item.trace).await?;
        }
        return Ok(());
    }
    let why = format!("dead-lettered after {} deliveries", dead.delivery_count);
    // Only for the round the message was sent in: an item retried since then is not
    // failed by its earlier message's dead letter.
    let round = jobs_core::envelope::round_of(&dead.message_id);
    match ctx
        .store
        .fail_dead_lettered(job.id, item.seq, round, &why)
        .await
    {
        Ok(c) if c.counted => after_completion(ctx, &job, &c, &item.trace).await,
        Ok(_) | Err(jobs_core::store::StoreError::UnknownItem { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long a retried message waits: what the processor asked for (a source's
/// `Retry-After`), else the back-off; either way at most `queue.max_delay_secs`.
fn retry_delay(ctx: &WorkerContext, delivery_count: u32, asked: Option<Duration>) -> Duration {
    let s = &ctx.settings;
    asked
        .unwrap_or_else(|| backoff(delivery_count, s.retry_base, s.retry_cap))
        .min(s.max_delay)
}
