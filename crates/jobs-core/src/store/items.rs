//! Work items: recording a plan, counting attempts, and completing items exactly once.

use super::jobs::transition_on;
use super::{JobStore, Progress, StoreError, to_u32};
use crate::id::JobId;
use crate::kind::WorkKind;
use crate::status::JobStatus;

/// One item of a plan, as recorded before its message is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    pub seq: u32,
    pub kind: WorkKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The plan was recorded and the job is now `running` with its `total` set.
    Started,
    /// The plan was recorded but has no items: the job went straight on to `finalizing`
    /// and the caller must finalize it.
    StartedEmpty,
    /// The job had left `planning` already (a redelivered request re-planned it, or it was
    /// cancelled): nothing was changed. The caller may still re-send the item messages.
    NotPlanning(JobStatus),
}

/// How one work item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    Failed { reason: String },
}

/// What completing an item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// False when the item had already been completed (a redelivery): nothing changed.
    pub counted: bool,
    /// Set for exactly one caller per job: the one whose completion made
    /// `done + failed == total`. It names the status that completion moved the job to
    /// (`finalizing`, or `cancelled` for a job being cancelled).
    pub finished_job: Option<JobStatus>,
    pub progress: Progress,
}

impl JobStore {
    /// Records the work items of a job and moves it `planning → running` with `total` set,
    /// in one transaction.
    ///
    /// Items are recorded *before* their messages are sent, so no item can complete while
    /// `total` is unknown and the last completion always sees the final total. Re-planning
    /// after a crash inserts nothing new (`ON CONFLICT DO NOTHING`) and reports
    /// [`PlanOutcome::NotPlanning`].
    pub async fn record_plan(
        &self,
        job_id: JobId,
        items: &[PlannedItem],
    ) -> Result<PlanOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM offload.jobs WHERE id = $1 FOR UPDATE")
                .bind(job_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let status: JobStatus = status
            .ok_or(StoreError::UnknownJob(job_id))?
            .parse()
            .map_err(|e: crate::status::UnknownStatus| StoreError::Corrupt {
                job_id,
                problem: e.to_string(),
            })?;
        if status != JobStatus::Planning {
            return Ok(PlanOutcome::NotPlanning(status));
        }
        let total = i32::try_from(items.len()).map_err(|_| StoreError::Corrupt {
            job_id,
            problem: format!("a plan of {} items is over the limit", items.len()),
        })?;
        let seqs: Vec<i32> = items.iter().map(|i| i.seq as i32).collect();
        let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        sqlx::query(
            "INSERT INTO offload.work_items (job_id, seq, kind)
             SELECT $1, seq, kind FROM unnest($2::int[], $3::text[]) AS t(seq, kind)
             ON CONFLICT (job_id, seq) DO NOTHING",
        )
        .bind(job_id.as_uuid())
        .bind(&seqs)
        .bind(&kinds)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE offload.jobs SET total = $2 WHERE id = $1")
            .bind(job_id.as_uuid())
            .bind(total)
            .execute(&mut *tx)
            .await?;
        transition_on(&mut tx, job_id, JobStatus::Running, None, None).await?;
        let outcome = if items.is_empty() {
            transition_on(&mut tx, job_id, JobStatus::Finalizing, None, None).await?;
            PlanOutcome::StartedEmpty
        } else {
            PlanOutcome::Started
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Counts one more attempt at a pending item and remembers its last error.
    pub async fn record_attempt(
        &self,
        job_id: JobId,
        seq: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE offload.work_items SET attempts = attempts + 1, last_error = $3
             WHERE job_id = $1 AND seq = $2 AND status = 'pending'",
        )
        .bind(job_id.as_uuid())
        .bind(seq as i32)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Completes item `seq` of a job, exactly once in effect.
    ///
    /// In one transaction: (1) the item moves from `pending` — only the first completion
    /// matches, a redelivered one changes nothing and returns `counted: false`; (2) the
    /// job's counter is bumped, which takes the job row's lock, so concurrent completers
    /// are serialized there and each sees the counts of all earlier ones; (3) the one
    /// completer that sees `done + failed == total` moves the job on while still holding
    /// the lock. Counters only grow, so exactly one transaction can observe the sum reach
    /// the total.
    pub async fn complete_item(
        &self,
        job_id: JobId,
        seq: u32,
        outcome: &ItemOutcome,
    ) -> Result<Completion, StoreError> {
        let (status, reason) = match outcome {
            ItemOutcome::Done => ("done", None),
            ItemOutcome::Failed { reason } => ("failed", Some(reason.as_str())),
        };
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE offload.work_items
             SET status = $3, last_error = coalesce($4, last_error), finished_at = now()
             WHERE job_id = $1 AND seq = $2 AND status = 'pending'",
        )
        .bind(job_id.as_uuid())
        .bind(seq as i32)
        .bind(status)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();

        if updated == 0 {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM offload.work_items WHERE job_id = $1 AND seq = $2)",
            )
            .bind(job_id.as_uuid())
            .bind(seq as i32)
            .fetch_one(&mut *tx)
            .await?;
            if !exists {
                return Err(StoreError::UnknownItem { job_id, seq });
            }
            let progress = self.progress_on(&mut tx, job_id).await?;
            tx.commit().await?;
            return Ok(Completion {
                counted: false,
                finished_job: None,
                progress,
            });
        }

        let (done_inc, failed_inc) = if status == "done" { (1, 0) } else { (0, 1) };
        let (job_status, total, done, failed): (String, Option<i32>, i32, i32) = sqlx::query_as(
            "UPDATE offload.jobs SET done = done + $2, failed = failed + $3, updated_at = now()
             WHERE id = $1 RETURNING status, total, done, failed",
        )
        .bind(job_id.as_uuid())
        .bind(done_inc)
        .bind(failed_inc)
        .fetch_one(&mut *tx)
        .await?;
        let progress = Progress {
            total: total.map(|t| to_u32(job_id, "total", t)).transpose()?,
            done: to_u32(job_id, "done", done)?,
            failed: to_u32(job_id, "failed", failed)?,
        };

        let mut finished_job = None;
        if total == Some(done + failed) {
            let next = match job_status.as_str() {
                "running" => Some(JobStatus::Finalizing),
                "cancelling" => Some(JobStatus::Cancelled),
                _ => None,
            };
            if let Some(next) = next
                && transition_on(&mut tx, job_id, next, None, None)
                    .await?
                    .is_some()
            {
                finished_job = Some(next);
            }
        }
        tx.commit().await?;
        Ok(Completion {
            counted: true,
            finished_job,
            progress,
        })
    }

    async fn progress_on(
        &self,
        conn: &mut sqlx::PgConnection,
        job_id: JobId,
    ) -> Result<Progress, StoreError> {
        let (total, done, failed): (Option<i32>, i32, i32) =
            sqlx::query_as("SELECT total, done, failed FROM offload.jobs WHERE id = $1")
                .bind(job_id.as_uuid())
                .fetch_one(conn)
                .await?;
        Ok(Progress {
            total: total.map(|t| to_u32(job_id, "total", t)).transpose()?,
            done: to_u32(job_id, "done", done)?,
            failed: to_u32(job_id, "failed", failed)?,
        })
    }
}
