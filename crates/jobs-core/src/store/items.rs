//! Work items: recording a plan, counting attempts, and completing items exactly once.

use sqlx::PgConnection;

use super::jobs::transition_on;
use super::{JobStore, Progress, StoreError, to_u32};
use crate::id::JobId;
use crate::kind::WorkKind;
use crate::status::JobStatus;

/// One item of a plan, as recorded before its message is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedItem {
    pub seq: u32,
    pub kind: WorkKind,
    /// The unit of work (a key range, a byte range): metadata only.
    pub payload: serde_json::Value,
}

/// A recorded item with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub item: PlannedItem,
    pub status: ItemStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub output: Option<serde_json::Value>,
}

/// Where one work item stands (`offload.work_items.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// Not completed yet (never run, running, or waiting for a retry).
    Pending,
    Done,
    Failed,
    /// Its job was cancelled before it ran.
    Skipped,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(job_id: JobId, s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            other => {
                return Err(StoreError::Corrupt {
                    job_id,
                    problem: format!("unknown work item status {other:?}"),
                });
            }
        })
    }
}

impl std::fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The plan was recorded and the job is now `running` with its `total` set.
    Started,
    /// The plan was recorded but has no items: the job went straight on to `finalizing`
    /// and the caller must finalize it.
    StartedEmpty,
    /// The job had left `planning` already (a redelivered request, or a cancellation):
    /// nothing was changed. A running job's recorded items may be re-sent.
    NotPlanning(JobStatus),
}

/// How one work item ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// Processed; `output` describes what was produced (read by finalization).
    Done {
        output: serde_json::Value,
    },
    Failed {
        reason: String,
    },
    /// Not processed because the job was cancelled.
    Skipped,
}

/// What completing an item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// False when the item had already been completed (a redelivery): nothing changed.
    pub counted: bool,
    /// Set for exactly one caller per job: the one whose completion gave every item an
    /// outcome. It names the status that completion moved the job to (`finalizing`, or
    /// `cancelled` for a job being cancelled).
    pub finished_job: Option<JobStatus>,
    /// The job's status after this call, so that a redelivered completion can repeat a
    /// follow-up step (sending the finalize message) that a crash may have cut short.
    pub job_status: JobStatus,
    pub progress: Progress,
}

#[derive(sqlx::FromRow)]
struct CountersRow {
    status: String,
    total: Option<i32>,
    done: i32,
    failed: i32,
    skipped: i32,
}

impl CountersRow {
    fn parse(self, job_id: JobId) -> Result<(JobStatus, Progress), StoreError> {
        let status = self
            .status
            .parse()
            .map_err(|e: crate::status::UnknownStatus| StoreError::Corrupt {
                job_id,
                problem: e.to_string(),
            })?;
        let progress = Progress {
            total: self.total.map(|t| to_u32(job_id, "total", t)).transpose()?,
            done: to_u32(job_id, "done", self.done)?,
            failed: to_u32(job_id, "failed", self.failed)?,
            skipped: to_u32(job_id, "skipped", self.skipped)?,
        };
        Ok((status, progress))
    }
}

impl JobStore {
    /// Records the work items of a job and moves it `planning → running` with `total` set,
    /// in one transaction.
    ///
    /// Items are recorded *before* their messages are sent, so no item can complete while
    /// `total` is unknown and the last completion always sees the final total. A
    /// redelivered request finds the job past `planning` and changes nothing
    /// ([`PlanOutcome::NotPlanning`]); it re-sends the recorded items ([`JobStore::items`]).
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
        let payloads: Vec<&serde_json::Value> = items.iter().map(|i| &i.payload).collect();
        sqlx::query(
            "INSERT INTO offload.work_items (job_id, seq, kind, payload)
             SELECT $1, seq, kind, payload
             FROM unnest($2::int[], $3::text[], $4::jsonb[]) AS t(seq, kind, payload)
             ON CONFLICT (job_id, seq) DO NOTHING",
        )
        .bind(job_id.as_uuid())
        .bind(&seqs)
        .bind(&kinds)
        .bind(&payloads)
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

    /// The recorded items of a job, in sequence order.
    pub async fn items(&self, job_id: JobId) -> Result<Vec<ItemRecord>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i32,
            kind: String,
            payload: serde_json::Value,
            status: String,
            attempts: i32,
            last_error: Option<String>,
            output: Option<serde_json::Value>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, kind, payload, status, attempts, last_error, output
             FROM offload.work_items WHERE job_id = $1 ORDER BY seq",
        )
        .bind(job_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let corrupt = |problem: String| StoreError::Corrupt { job_id, problem };
                Ok(ItemRecord {
                    item: PlannedItem {
                        seq: to_u32(job_id, "seq", r.seq)?,
                        kind: WorkKind::parse(&r.kind).map_err(|e| corrupt(e.to_string()))?,
                        payload: r.payload,
                    },
                    status: ItemStatus::parse(job_id, &r.status)?,
                    attempts: to_u32(job_id, "attempts", r.attempts)?,
                    last_error: r.last_error,
                    output: r.output,
                })
            })
            .collect()
    }

    /// The status of one item, if it exists.
    pub async fn item_status(
        &self,
        job_id: JobId,
        seq: u32,
    ) -> Result<Option<ItemStatus>, StoreError> {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM offload.work_items WHERE job_id = $1 AND seq = $2",
        )
        .bind(job_id.as_uuid())
        .bind(seq as i32)
        .fetch_optional(&self.pool)
        .await?;
        status.map(|s| ItemStatus::parse(job_id, &s)).transpose()
    }

    /// Records a failed attempt at a pending item, made on its message's delivery
    /// `delivery`, and remembers its error. `attempts` counts deliveries, those that never
    /// reported (a killed worker) included: it becomes at least `delivery`.
    pub async fn record_attempt(
        &self,
        job_id: JobId,
        seq: u32,
        delivery: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE offload.work_items
             SET attempts = greatest(attempts + 1, $4), last_error = $3
             WHERE job_id = $1 AND seq = $2 AND status = 'pending'",
        )
        .bind(job_id.as_uuid())
        .bind(seq as i32)
        .bind(error)
        .bind(i32::try_from(delivery).unwrap_or(i32::MAX))
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
    /// completer that sees every item accounted for moves the job on while still holding
    /// the lock. Counters only grow, so exactly one transaction can observe the sum reach
    /// the total.
    pub async fn complete_item(
        &self,
        job_id: JobId,
        seq: u32,
        outcome: &ItemOutcome,
    ) -> Result<Completion, StoreError> {
        self.complete_item_in_round(job_id, seq, outcome, None, None)
            .await
    }

    /// [`JobStore::complete_item`] by a worker on its message's delivery `delivery`:
    /// `attempts` becomes at least `delivery` (deliveries of killed workers count).
    pub async fn complete_delivered_item(
        &self,
        job_id: JobId,
        seq: u32,
        delivery: u32,
        outcome: &ItemOutcome,
    ) -> Result<Completion, StoreError> {
        self.complete_item_in_round(job_id, seq, outcome, None, Some(delivery))
            .await
    }

    /// Counts item `seq` failed because its message of retry round `round` was
    /// dead-lettered — unless the item has been retried since (a later round), when that
    /// old dead letter says nothing about the item any more.
    pub async fn fail_dead_lettered(
        &self,
        job_id: JobId,
        seq: u32,
        round: u32,
        reason: &str,
    ) -> Result<Completion, StoreError> {
        let outcome = ItemOutcome::Failed {
            reason: reason.to_owned(),
        };
        self.complete_item_in_round(job_id, seq, &outcome, Some(round), None)
            .await
    }

    /// [`JobStore::complete_item`], only if the item is in `round` (when given).
    async fn complete_item_in_round(
        &self,
        job_id: JobId,
        seq: u32,
        outcome: &ItemOutcome,
        round: Option<u32>,
        delivery: Option<u32>,
    ) -> Result<Completion, StoreError> {
        let (status, reason, output) = match outcome {
            ItemOutcome::Done { output } => (ItemStatus::Done.as_str(), None, Some(output)),
            ItemOutcome::Failed { reason } => {
                (ItemStatus::Failed.as_str(), Some(reason.as_str()), None)
            }
            ItemOutcome::Skipped => (ItemStatus::Skipped.as_str(), None, None),
        };
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE offload.work_items
             SET status = $3, last_error = coalesce($4, last_error), output = $5,
                 finished_at = now(), attempts = greatest(attempts, coalesce($7, 0))
             WHERE job_id = $1 AND seq = $2 AND status = 'pending'
               AND ($6::int IS NULL OR round = $6)",
        )
        .bind(job_id.as_uuid())
        .bind(seq as i32)
        .bind(status)
        .bind(reason)
        .bind(output)
        .bind(round.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
        .bind(delivery.map(|d| i32::try_from(d).unwrap_or(i32::MAX)))
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
            let (job_status, progress) = counters(&mut tx, job_id, None).await?;
            tx.commit().await?;
            return Ok(Completion {
                counted: false,
                finished_job: None,
                job_status,
                progress,
            });
        }

        let (mut job_status, progress) = counters(&mut tx, job_id, Some(status)).await?;
        let mut finished_job = None;
        if progress.is_complete() {
            let next = match job_status {
                JobStatus::Running => Some(JobStatus::Finalizing),
                JobStatus::Cancelling => Some(JobStatus::Cancelled),
                _ => None,
            };
            if let Some(next) = next
                && transition_on(&mut tx, job_id, next, None, None)
                    .await?
                    .is_some()
            {
                finished_job = Some(next);
                job_status = next;
            }
        }
        tx.commit().await?;
        Ok(Completion {
            counted: true,
            finished_job,
            job_status,
            progress,
        })
    }
}

/// Reads the job's counters, first bumping the one named by `bump` (which takes the row
/// lock that serializes completers).
async fn counters(
    conn: &mut PgConnection,
    job_id: JobId,
    bump: Option<&str>,
) -> Result<(JobStatus, Progress), StoreError> {
    let row: CountersRow = match bump {
        Some(column) => {
            sqlx::query_as(
                "WITH u AS (
                    UPDATE offload.jobs SET
                        done = done + (CASE WHEN $2 = 'done' THEN 1 ELSE 0 END),
                        failed = failed + (CASE WHEN $2 = 'failed' THEN 1 ELSE 0 END),
                        skipped = skipped + (CASE WHEN $2 = 'skipped' THEN 1 ELSE 0 END),
                        updated_at = now()
                    WHERE id = $1 RETURNING id, status, total, done, failed, skipped)
                 SELECT status, total, done, failed, skipped,
                        pg_notify($3, json_build_object('id', id, 'status', status, 'total', total,
                            'done', done, 'failed', failed, 'skipped', skipped)::text)::text AS notified
                 FROM u",
            )
            .bind(job_id.as_uuid())
            .bind(column)
            .bind(super::JOB_EVENTS_CHANNEL)
            .fetch_one(&mut *conn)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT status, total, done, failed, skipped FROM offload.jobs WHERE id = $1",
            )
            .bind(job_id.as_uuid())
            .fetch_one(&mut *conn)
            .await?
        }
    };
    row.parse(job_id)
}
