//! Creating, reading, listing and moving jobs through their statuses.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Job, JobStore, NewJob, Progress, StoreError, to_u32};
use crate::id::{JobId, TenantId};
use crate::kind::JobKind;
use crate::status::JobStatus;

/// The columns every job query returns, in [`JobRow`] order.
pub(super) const JOB_COLUMNS: &str = "id, tenant_id, kind, status, params, idempotency_key, \
     total, done, failed, skipped, result, error, created_at, started_at, finished_at, updated_at";

#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    id: Uuid,
    tenant_id: String,
    kind: String,
    status: String,
    params: serde_json::Value,
    idempotency_key: Option<String>,
    total: Option<i32>,
    done: i32,
    failed: i32,
    skipped: i32,
    result: Option<serde_json::Value>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let id = JobId::from_uuid(r.id);
        let corrupt = |problem: String| StoreError::Corrupt {
            job_id: id,
            problem,
        };
        Ok(Job {
            id,
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(e.to_string()))?,
            kind: JobKind::parse(&r.kind).map_err(|e| corrupt(e.to_string()))?,
            status: r
                .status
                .parse()
                .map_err(|e: crate::status::UnknownStatus| corrupt(e.to_string()))?,
            params: r.params,
            idempotency_key: r.idempotency_key,
            progress: Progress {
                total: r.total.map(|t| to_u32(id, "total", t)).transpose()?,
                done: to_u32(id, "done", r.done)?,
                failed: to_u32(id, "failed", r.failed)?,
                skipped: to_u32(id, "skipped", r.skipped)?,
            },
            result: r.result,
            error: r.error,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// A new job was written.
    Created(Job),
    /// The idempotency key was seen before with the same request: this is that job.
    Existing(Job),
}

impl CreateOutcome {
    pub fn job(&self) -> &Job {
        match self {
            Self::Created(j) | Self::Existing(j) => j,
        }
    }
}

/// Filters for [`JobStore::list`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
}

/// Position after the last job of a page: jobs are listed newest first by
/// `(created_at, id)`, which the `jobs_tenant_created` index serves directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: JobId,
}

#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Present when more jobs may follow.
    pub next: Option<ListCursor>,
}

impl JobStore {
    /// Creates a job in its own transaction. See [`JobStore::create_in`].
    pub async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let outcome = self.create_in(&mut tx, new).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Creates a job (status `queued`) on the caller's connection, so that the caller can
    /// write the job's first message in the same transaction.
    ///
    /// With an idempotency key, a second request with the same key and the same request
    /// hash gets the first job back; with another request it gets
    /// [`StoreError::IdempotencyConflict`]. Two concurrent first requests are serialized by
    /// the unique index: the loser's `ON CONFLICT DO NOTHING` waits for the winner's commit
    /// and then reads its row.
    pub async fn create_in(
        &self,
        conn: &mut PgConnection,
        new: &NewJob,
    ) -> Result<CreateOutcome, StoreError> {
        let hash = new.request_hash();
        let inserted: Option<JobRow> = sqlx::query_as(&format!(
            "INSERT INTO offload.jobs (id, tenant_id, kind, params, idempotency_key, request_hash)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(new.id.as_uuid())
        .bind(new.tenant_id.as_str())
        .bind(new.kind.as_str())
        .bind(&new.params)
        .bind(new.idempotency_key.as_deref())
        .bind(&hash[..])
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            return Ok(CreateOutcome::Created(row.try_into()?));
        }
        let key = new.idempotency_key.clone().unwrap_or_default();
        let (row, stored_hash): (JobRow, Option<Vec<u8>>) = {
            #[derive(sqlx::FromRow)]
            struct WithHash {
                #[sqlx(flatten)]
                row: JobRow,
                request_hash: Option<Vec<u8>>,
            }
            let r: WithHash = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS}, request_hash FROM offload.jobs
                 WHERE tenant_id = $1 AND idempotency_key = $2"
            ))
            .bind(new.tenant_id.as_str())
            .bind(&key)
            .fetch_one(&mut *conn)
            .await?;
            (r.row, r.request_hash)
        };
        if stored_hash.as_deref() == Some(&hash[..]) {
            Ok(CreateOutcome::Existing(row.try_into()?))
        } else {
            Err(StoreError::IdempotencyConflict { key })
        }
    }

    /// A job of `tenant`, or `None` when it does not exist or belongs to another tenant
    /// (the two are indistinguishable on purpose).
    pub async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM offload.jobs WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Job::try_from).transpose()
    }

    /// A job by id alone, for services acting on a message (which carries no tenant).
    pub async fn get_any(&self, id: JobId) -> Result<Job, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM offload.jobs WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::UnknownJob(id))?.try_into()
    }

    /// A page of a tenant's jobs, newest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        after: Option<ListCursor>,
        limit: u32,
    ) -> Result<JobPage, StoreError> {
        let limit = limit.clamp(1, 500);
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM offload.jobs
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR kind = $3)
               AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
             ORDER BY created_at DESC, id DESC
             LIMIT $6"
        ))
        .bind(tenant.as_str())
        .bind(filter.status.map(JobStatus::as_str))
        .bind(filter.kind.as_ref().map(JobKind::as_str))
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id.as_uuid()))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| ListCursor {
                created_at: j.created_at,
                id: j.id,
            })
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    /// Moves a job to `to` if the state machine allows it from the job's current status.
    /// Returns the updated job, or `None` when the job was not in a status `to` may follow
    /// (someone else moved it first, or the move is forbidden). Entering `running` stamps
    /// `started_at`; entering a terminal status stamps `finished_at`.
    pub async fn transition(&self, id: JobId, to: JobStatus) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        transition_on(&mut conn, id, to, None, None).await
    }

    /// [`JobStore::transition`] as part of the caller's transaction on `conn`, so that
    /// what goes with the move (a message, an outbox row) commits with it or not at all.
    pub async fn transition_in(
        conn: &mut PgConnection,
        id: JobId,
        to: JobStatus,
    ) -> Result<Option<Job>, StoreError> {
        transition_on(conn, id, to, None, None).await
    }

    /// `finalizing → succeeded`, recording the result document.
    pub async fn succeed(
        &self,
        id: JobId,
        result: &serde_json::Value,
    ) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        transition_on(&mut conn, id, JobStatus::Succeeded, Some(result), None).await
    }

    /// Any non-terminal status that may fail → `failed`, recording why.
    pub async fn fail(&self, id: JobId, error: &str) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        transition_on(&mut conn, id, JobStatus::Failed, None, Some(error)).await
    }

    /// `→ failed`, recording why and a result document all the same (an import that
    /// rejected too many rows keeps its counts and its rejects report).
    pub async fn fail_with_result(
        &self,
        id: JobId,
        error: &str,
        result: &serde_json::Value,
    ) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        transition_on(&mut conn, id, JobStatus::Failed, Some(result), Some(error)).await
    }
}

/// The one place a job's status is written.
pub(super) async fn transition_on(
    conn: &mut PgConnection,
    id: JobId,
    to: JobStatus,
    result: Option<&serde_json::Value>,
    error: Option<&str>,
) -> Result<Option<Job>, StoreError> {
    let sources: Vec<&str> = JobStatus::sources_of(to)
        .iter()
        .map(|s| s.as_str())
        .collect();
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE offload.jobs SET
            status = $2,
            started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
            finished_at = CASE WHEN $3 THEN now() ELSE finished_at END,
            result = coalesce($4, result),
            error = coalesce($5, error),
            updated_at = now()
         WHERE id = $1 AND status = ANY($6)
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(id.as_uuid())
    .bind(to.as_str())
    .bind(to.is_terminal())
    .bind(result)
    .bind(error)
    .bind(&sources)
    .fetch_optional(&mut *conn)
    .await?;
    let job = row.map(Job::try_from).transpose()?;
    if let Some(j) = &job {
        let event = serde_json::json!({
            "id": j.id, "status": j.status, "total": j.progress.total, "done": j.progress.done,
            "failed": j.progress.failed, "skipped": j.progress.skipped,
        });
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::JOB_EVENTS_CHANNEL)
            .bind(event.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(job)
}
