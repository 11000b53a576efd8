//! Schedules and their fired ticks in Postgres: what the API reads and writes (a change
//! under the row's lock), and the claim and record the enqueuers fire with.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{CatchUp, Schedule, ScheduleError, ScheduleId, ScheduleRun};
use crate::id::{JobId, TenantId};
use crate::kind::JobKind;

/// Runs kept per schedule: older ones are pruned as new ticks are recorded (the record of
/// a tick that can no longer come round again is history, not a guard).
const KEEP_RUNS: i64 = 100;

const COLUMNS: &str = "id, tenant_id, name, cron, timezone, kind, params, enabled, next_run_at, \
     last_run_at, last_job_id, skipped_ticks, last_error, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: String,
    name: String,
    cron: String,
    timezone: String,
    kind: String,
    params: serde_json::Value,
    enabled: bool,
    next_run_at: Option<DateTime<Utc>>,
    last_run_at: Option<DateTime<Utc>>,
    last_job_id: Option<Uuid>,
    skipped_ticks: i64,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Schedule {
    type Error = ScheduleError;

    fn try_from(r: Row) -> Result<Self, ScheduleError> {
        let id = ScheduleId::from_uuid(r.id);
        let corrupt = |problem: String| ScheduleError::Corrupt {
            schedule_id: id,
            problem,
        };
        Ok(Schedule {
            id,
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(e.to_string()))?,
            name: r.name,
            cron: r.cron,
            timezone: r.timezone,
            kind: JobKind::parse(&r.kind).map_err(|e| corrupt(e.to_string()))?,
            params: r.params,
            enabled: r.enabled,
            next_run_at: r.next_run_at,
            last_run_at: r.last_run_at,
            last_job_id: r.last_job_id.map(JobId::from_uuid),
            skipped_ticks: u64::try_from(r.skipped_ticks)
                .map_err(|_| corrupt(format!("skipped_ticks = {}", r.skipped_ticks)))?,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What the API asks to create: checked already (the job request validated, the cron
/// expression and time zone parsed, the first tick computed).
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub id: ScheduleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub next_run_at: DateTime<Utc>,
}

/// Position after the last schedule of a page (newest first by `(created_at, id)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleCursor {
    pub created_at: DateTime<Utc>,
    pub id: ScheduleId,
}

#[derive(Debug, Clone)]
pub struct SchedulePage {
    pub schedules: Vec<Schedule>,
    /// Present when more schedules may follow.
    pub next: Option<ScheduleCursor>,
}

/// Handle on the schedule tables. Cheap to clone (it holds the pool).
#[derive(Clone, Debug)]
pub struct ScheduleStore {
    pool: PgPool,
}

impl ScheduleStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn create(&self, new: &NewSchedule) -> Result<Schedule, ScheduleError> {
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO offload.schedules
                 (id, tenant_id, name, cron, timezone, kind, params, next_run_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING {COLUMNS}"
        ))
        .bind(new.id.as_uuid())
        .bind(new.tenant_id.as_str())
        .bind(&new.name)
        .bind(&new.cron)
        .bind(&new.timezone)
        .bind(new.kind.as_str())
        .bind(&new.params)
        .bind(new.next_run_at)
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    /// A schedule of `tenant`; `None` when it does not exist or is another tenant's.
    pub async fn get(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
    ) -> Result<Option<Schedule>, ScheduleError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM offload.schedules WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Schedule::try_from).transpose()
    }

    /// A page of a tenant's schedules, newest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<ScheduleCursor>,
        limit: u32,
    ) -> Result<SchedulePage, ScheduleError> {
        let limit = limit.clamp(1, 500);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM offload.schedules
             WHERE tenant_id = $1
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC
             LIMIT $4"
        ))
        .bind(tenant.as_str())
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id.as_uuid()))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut schedules = rows
            .into_iter()
            .map(Schedule::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if schedules.len() > limit as usize {
            schedules.truncate(limit as usize);
            schedules.last().map(|s| ScheduleCursor {
                created_at: s.created_at,
                id: s.id,
            })
        } else {
            None
        };
        Ok(SchedulePage { schedules, next })
    }

    /// The schedule's most recent fired ticks, newest first, with their jobs' statuses.
    pub async fn runs(
        &self,
        id: ScheduleId,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>, ScheduleError> {
        type RunRow = (
            DateTime<Utc>,
            DateTime<Utc>,
            Option<Uuid>,
            Option<String>,
            i64,
        );
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT r.tick_at, r.fired_at, r.job_id, j.status, r.skipped
             FROM offload.schedule_runs r LEFT JOIN offload.jobs j ON j.id = r.job_id
             WHERE r.schedule_id = $1
             ORDER BY r.tick_at DESC
             LIMIT $2",
        )
        .bind(id.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(tick_at, fired_at, job_id, status, skipped)| {
                let corrupt = |problem: String| ScheduleError::Corrupt {
                    schedule_id: id,
                    problem,
                };
                Ok(ScheduleRun {
                    tick_at,
                    fired_at,
                    job_id: job_id.map(JobId::from_uuid),
                    job_status: status
                        .map(|s| s.parse())
                        .transpose()
                        .map_err(|e: crate::status::UnknownStatus| corrupt(e.to_string()))?,
                    skipped: u64::try_from(skipped)
                        .map_err(|_| corrupt(format!("skipped = {skipped}")))?,
                })
            })
            .collect()
    }

    /// Changes a schedule of `tenant` in one transaction: the row is locked (`FOR UPDATE`,
    /// waiting for an enqueuer firing it to commit), `change` computes the new schedule from
    /// the row as locked, and the new values are written before the lock is released. An
    /// enqueuer's claim (`FOR UPDATE SKIP LOCKED`) passes over the row meanwhile and sees
    /// it again only once committed, so a tick fires with the whole old schedule or the
    /// whole new one, never a mix. `Ok(None)` when there is no such schedule; an error of
    /// `change` rolls back and is returned as it is.
    pub async fn update<E>(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        change: impl FnOnce(&Schedule) -> Result<Schedule, E>,
    ) -> Result<Option<Schedule>, E>
    where
        E: From<ScheduleError>,
    {
        let mut tx = self.pool.begin().await.map_err(ScheduleError::from)?;
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM offload.schedules WHERE id = $1 AND tenant_id = $2
             FOR UPDATE"
        ))
        .bind(id.as_uuid())
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(ScheduleError::from)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let current = Schedule::try_from(row)?;
        let next = change(&current)?;
        let row: Row = sqlx::query_as(&format!(
            "UPDATE offload.schedules SET
                 name = $2, cron = $3, timezone = $4, kind = $5, params = $6, enabled = $7,
                 next_run_at = $8, last_error = $9, updated_at = now()
             WHERE id = $1
             RETURNING {COLUMNS}"
        ))
        .bind(current.id.as_uuid())
        .bind(&next.name)
        .bind(&next.cron)
        .bind(&next.timezone)
        .bind(next.kind.as_str())
        .bind(&next.params)
        .bind(next.enabled)
        .bind(next.next_run_at)
        .bind(&next.last_error)
        .fetch_one(&mut *tx)
        .await
        .map_err(ScheduleError::from)?;
        tx.commit().await.map_err(ScheduleError::from)?;
        Ok(Some(row.try_into()?))
    }

    /// Stops firing: `enabled = false`, no next tick. Idempotent.
    pub async fn pause(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
    ) -> Result<Option<Schedule>, ScheduleError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE offload.schedules SET enabled = false, next_run_at = NULL, updated_at = now()
             WHERE id = $1 AND tenant_id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Schedule::try_from).transpose()
    }

    /// Fires again from `next_run_at` (the first tick after now: ticks that fell while the
    /// schedule was paused are neither fired nor counted). A schedule that is not paused is
    /// left as it is. `None` when there is no such schedule.
    pub async fn resume(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, ScheduleError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE offload.schedules
             SET enabled = true, next_run_at = $3, last_error = NULL, updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND NOT enabled
             RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(tenant.as_str())
        .bind(next_run_at)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(r.try_into()?)),
            None => self.get(tenant, id).await,
        }
    }

    /// Deletes a schedule and its record of runs (the jobs it made stay). Waits for a
    /// firing in progress to commit. Returns whether it existed.
    pub async fn delete(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool, ScheduleError> {
        let done = sqlx::query("DELETE FROM offload.schedules WHERE id = $1 AND tenant_id = $2")
            .bind(id.as_uuid())
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the earliest schedule due at `now`, locked for the caller's transaction on
    /// `conn`; schedules other transactions hold are skipped, so concurrent enqueuers each
    /// take a different one. The lock lasts until that transaction ends, and the caller moves
    /// `next_run_at` past `now` before it does: a schedule's tick is claimed once. (Under
    /// READ COMMITTED a row another transaction just advanced is re-checked against the
    /// WHERE clause, so a claim never sees the tick it fired as still due.)
    pub async fn claim_due(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<Schedule>, ScheduleError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM offload.schedules
             WHERE enabled AND next_run_at <= $1
             ORDER BY next_run_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED"
        ))
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(Schedule::try_from).transpose()
    }

    /// Records that `tick` fired (and how many older ticks it skipped). `false` when it was
    /// recorded already: the tick must then make no job.
    pub async fn record_tick(
        &self,
        conn: &mut PgConnection,
        id: ScheduleId,
        tick: DateTime<Utc>,
        skipped: u64,
    ) -> Result<bool, ScheduleError> {
        let inserted = sqlx::query(
            "INSERT INTO offload.schedule_runs (schedule_id, tick_at, skipped)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id.as_uuid())
        .bind(tick)
        .bind(i64::try_from(skipped).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM offload.schedule_runs WHERE schedule_id = $1 AND tick_at < (
                 SELECT tick_at FROM offload.schedule_runs WHERE schedule_id = $1
                 ORDER BY tick_at DESC OFFSET $2 LIMIT 1)",
        )
        .bind(id.as_uuid())
        .bind(KEEP_RUNS - 1)
        .execute(&mut *conn)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Moves a claimed schedule on after a tick: the next tick, the tick fired and its job
    /// (or why it made none), the skipped ticks added to the total.
    pub async fn advance(
        &self,
        conn: &mut PgConnection,
        id: ScheduleId,
        catch_up: &CatchUp,
        job_id: Option<JobId>,
        error: Option<&str>,
    ) -> Result<(), ScheduleError> {
        if let Some(job) = job_id {
            sqlx::query(
                "UPDATE offload.schedule_runs SET job_id = $3
                 WHERE schedule_id = $1 AND tick_at = $2",
            )
            .bind(id.as_uuid())
            .bind(catch_up.fire)
            .bind(job.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "UPDATE offload.schedules SET
                 next_run_at = $2,
                 last_run_at = $3,
                 last_job_id = coalesce($4, last_job_id),
                 skipped_ticks = skipped_ticks + $5,
                 last_error = $6,
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(id.as_uuid())
        .bind(catch_up.next)
        .bind(catch_up.fire)
        .bind(job_id.map(|j| j.as_uuid()))
        .bind(i64::try_from(catch_up.skipped).unwrap_or(i64::MAX))
        .bind(error)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Turns off a claimed schedule that cannot be evaluated any more (its time zone left
    /// the time zone database, say), saying why; it would otherwise be claimed again on
    /// every pass.
    pub async fn disable(
        &self,
        conn: &mut PgConnection,
        id: ScheduleId,
        error: &str,
    ) -> Result<(), ScheduleError> {
        sqlx::query(
            "UPDATE offload.schedules
             SET enabled = false, next_run_at = NULL, last_error = $2, updated_at = now()
             WHERE id = $1",
        )
        .bind(id.as_uuid())
        .bind(error)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
