//! Retrying a finished job's failed items on its owner's request.
//!
//! In one transaction (the caller's, so the items' messages can be written in it too):
//! the job row is locked; a `failed` job with failed items has them moved back to
//! `pending` in a new retry round, its `failed` counter lowered by as many, its error and
//! finish time cleared, its retry count raised, and its status moved `failed → running`
//! (the state machine's one way out of a terminal status). The items then end through
//! the normal path, and the last completion finalizes the job again.
//!
//! The round is part of the retried messages' ids (`{job}:{seq}:retry-{round}`), so
//! duplicate detection does not drop them as repeats of the first sending, and a dead
//! letter of an earlier round cannot fail the item again ([`JobStore::fail_dead_lettered`]).

use sqlx::PgConnection;

use super::jobs::{JOB_COLUMNS, JobRow};
use super::{Job, JobStore, PlannedItem, StoreError, to_u32};
use crate::id::{JobId, TenantId};
use crate::kind::WorkKind;
use crate::status::JobStatus;

/// An item sent again, with the round its message belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct RetriedItem {
    pub item: PlannedItem,
    pub round: u32,
}

/// What a retry request found.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// The items were moved back to pending; the job is `running` again.
    Retried {
        job: Box<Job>,
        items: Vec<RetriedItem>,
    },
    /// The job has not finished.
    NotFinished(JobStatus),
    /// The job finished without failed items to retry (it succeeded, was cancelled, or
    /// failed outside its items, say while planning).
    NothingToRetry(JobStatus),
}

impl JobStore {
    /// Moves the failed items of `tenant`'s job back to pending and the job back to
    /// running, on `conn` (inside the caller's transaction). `None`: no such job for this
    /// tenant.
    pub async fn retry_failed_in(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        job_id: JobId,
    ) -> Result<Option<RetryOutcome>, StoreError> {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM offload.jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        )
        .bind(job_id.as_uuid())
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(status) = status else {
            return Ok(None);
        };
        let status: JobStatus =
            status
                .parse()
                .map_err(|e: crate::status::UnknownStatus| StoreError::Corrupt {
                    job_id,
                    problem: e.to_string(),
                })?;
        if !status.is_terminal() {
            return Ok(Some(RetryOutcome::NotFinished(status)));
        }
        if status.transition(JobStatus::Running).is_err() {
            return Ok(Some(RetryOutcome::NothingToRetry(status)));
        }
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i32,
            kind: String,
            payload: serde_json::Value,
            round: i32,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "UPDATE offload.work_items
             SET status = 'pending', round = round + 1, output = NULL, finished_at = NULL
             WHERE job_id = $1 AND status = 'failed'
             RETURNING seq, kind, payload, round",
        )
        .bind(job_id.as_uuid())
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(Some(RetryOutcome::NothingToRetry(status)));
        }
        let sources: Vec<&str> = JobStatus::sources_of(JobStatus::Running)
            .iter()
            .map(|s| s.as_str())
            .collect();
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "UPDATE offload.jobs SET
                 status = 'running', failed = failed - $2, retries = retries + 1,
                 error = NULL, result = NULL, finished_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'failed' AND status = ANY($3)
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(job_id.as_uuid())
        .bind(i32::try_from(rows.len()).unwrap_or(i32::MAX))
        .bind(&sources)
        .fetch_optional(&mut *conn)
        .await?;
        // The row is locked and was `failed`: the update cannot miss.
        let job: Job = row
            .ok_or_else(|| StoreError::Corrupt {
                job_id,
                problem: "the job changed under its lock".into(),
            })?
            .try_into()?;
        let event = serde_json::json!({
            "id": job.id, "status": job.status, "total": job.progress.total,
            "done": job.progress.done, "failed": job.progress.failed,
            "skipped": job.progress.skipped,
        });
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::JOB_EVENTS_CHANNEL)
            .bind(event.to_string())
            .execute(&mut *conn)
            .await?;
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(RetriedItem {
                    item: PlannedItem {
                        seq: to_u32(job_id, "seq", r.seq)?,
                        kind: WorkKind::parse(&r.kind).map_err(|e| StoreError::Corrupt {
                            job_id,
                            problem: e.to_string(),
                        })?,
                        payload: r.payload,
                    },
                    round: to_u32(job_id, "round", r.round)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(RetryOutcome::Retried {
            job: Box::new(job),
            items,
        }))
    }

    /// How many times the job's failed items were retried: the round of its finalize and
    /// finished messages, whose ids must differ from the earlier rounds' for duplicate
    /// detection to let them through.
    pub async fn retries(&self, job_id: JobId) -> Result<u32, StoreError> {
        let n: Option<i32> = sqlx::query_scalar("SELECT retries FROM offload.jobs WHERE id = $1")
            .bind(job_id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        to_u32(job_id, "retries", n.ok_or(StoreError::UnknownJob(job_id))?)
    }
}
