//! Firing schedules: every `schedules.tick_interval_ms`, each enqueuer turns the schedules
//! that are due into jobs.
//!
//! Every enqueuer runs this loop; a tick still makes one job. A due schedule is claimed
//! with `FOR UPDATE SKIP LOCKED` and, in one transaction, its tick is recorded (unique per
//! schedule and tick), the job is created (idempotency key `schedule:{id}:{tick}`), its
//! `job.requested` message is written (the Postgres transport joins the transaction; any
//! other goes through the outbox), and `next_run_at` moves past now. A crash before the
//! commit leaves the schedule due, and the next pass fires the same tick; after the commit
//! nothing can fire it again.
//!
//! Missed ticks (no enqueuer ran for a while): the most recent due tick fires, once; the
//! older ones are skipped and counted on the schedule (`skipped_ticks`) and on the run.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jobs_core::JobId;
use jobs_core::envelope::TraceContext;
use jobs_core::schedule::{ScheduleId, ScheduleStore};
use jobs_core::store::{CreateOutcome, NewJob, StoreError};
use jobs_queue::messages::JobMessage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{EnqueuerContext, EnqueuerError};

/// Schedules fired per pass before the loop looks at `shutdown` again.
const MAX_PER_PASS: usize = 1000;

/// What one claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule_id: ScheduleId,
    /// The tick fired (the most recent due one).
    pub tick: DateTime<Utc>,
    /// The job the tick made; `None` when it made none (see the schedule's `last_error`).
    pub job_id: Option<JobId>,
    /// Older due ticks skipped.
    pub skipped: u64,
}

/// Fires the earliest schedule due at `now`, if any: one transaction, as the module says.
pub async fn fire_next_due(
    ctx: &EnqueuerContext,
    now: DateTime<Utc>,
) -> Result<Option<Fired>, EnqueuerError> {
    let schedules = ScheduleStore::new(ctx.store.pool().clone());
    let mut tx = ctx.store.pool().begin().await.map_err(StoreError::from)?;
    let Some(schedule) = schedules.claim_due(&mut tx, now).await? else {
        return Ok(None);
    };
    let span = tracing::info_span!("schedule.fire", schedule_id = %schedule.id, tenant = %schedule.tenant_id);
    async {
        let Some(due) = schedule.next_run_at else {
            return Ok(None); // the claim only returns schedules with a next tick
        };
        let timetable = match schedule.timetable() {
            Ok(t) => t,
            Err(e) => {
                let why = format!(
                    "the schedule cannot be evaluated: {}: {}",
                    e.field, e.message
                );
                tracing::warn!(%why, "schedule disabled");
                schedules.disable(&mut tx, schedule.id, &why).await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(Some(Fired {
                    schedule_id: schedule.id,
                    tick: due,
                    job_id: None,
                    skipped: 0,
                }));
            }
        };
        let catch_up = timetable.catch_up(due, now);
        let mut job_id = None;
        let mut error = None;
        if schedules
            .record_tick(&mut tx, schedule.id, catch_up.fire, catch_up.skipped)
            .await?
        {
            let new = NewJob {
                id: JobId::new(),
                tenant_id: schedule.tenant_id.clone(),
                kind: schedule.kind.clone(),
                params: schedule.params.clone(),
                idempotency_key: Some(schedule.job_key(catch_up.fire)),
            };
            match ctx.store.create_in(&mut tx, &new).await {
                Ok(CreateOutcome::Created(job)) => {
                    let msg = JobMessage::Requested {
                        job_id: job.id,
                        correlation_id: job.id.to_string(),
                        trace: TraceContext::current(),
                    };
                    ctx.tx_sender
                        .send_in(&mut tx, &ctx.queues.jobs, &[msg.to_message()])
                        .await?;
                    job_id = Some(job.id);
                }
                // Made by an earlier transaction for this very tick (the key says so).
                Ok(CreateOutcome::Existing(job)) => job_id = Some(job.id),
                Err(StoreError::IdempotencyConflict { key }) => {
                    error = Some(format!("a job with idempotency key {key:?} exists already"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        schedules
            .advance(&mut tx, schedule.id, &catch_up, job_id, error.as_deref())
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        ctx.tx_sender.committed();
        tracing::info!(
            tick = %catch_up.fire, skipped = catch_up.skipped, job_id = ?job_id,
            next = ?catch_up.next, "schedule fired"
        );
        Ok(Some(Fired {
            schedule_id: schedule.id,
            tick: catch_up.fire,
            job_id,
            skipped: catch_up.skipped,
        }))
    }
    .instrument(span)
    .await
}

/// Fires every schedule due at `now` (up to [`MAX_PER_PASS`]); returns how many claims it made.
pub async fn fire_due(ctx: &EnqueuerContext, now: DateTime<Utc>) -> Result<usize, EnqueuerError> {
    let mut fired = 0;
    while fired < MAX_PER_PASS && fire_next_due(ctx, now).await?.is_some() {
        fired += 1;
    }
    Ok(fired)
}

/// Fires due schedules every `schedules.tick_interval_ms` until `shutdown`.
pub async fn fire_until_stopped(ctx: Arc<EnqueuerContext>, shutdown: CancellationToken) {
    let interval = ctx.env.cfg.schedules.tick_interval();
    loop {
        match fire_due(&ctx, Utc::now()).await {
            // More were due than one pass takes: go on at once.
            Ok(n) if n == MAX_PER_PASS => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "firing schedules failed; trying again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
