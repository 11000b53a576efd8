//! The job-status store: jobs, their planned work items, progress counters, tenants and
//! uploads, in Postgres.
//!
//! This is the only shared state between services besides the queues. Every write is
//! conditional so that any handler can run twice: status changes follow the state machine in
//! [`crate::status`], item completion counts once per item, and exactly one caller learns
//! that it completed a job's last item.

mod items;
mod jobs;
mod retry;
mod tenants;
mod uploads;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::id::{JobId, TenantId};
use crate::kind::JobKind;
use crate::status::JobStatus;

pub use items::{Completion, ItemOutcome, ItemRecord, ItemStatus, PlanOutcome, PlannedItem};
pub use jobs::{CreateOutcome, JobFilter, JobPage, ListCursor};
pub use retry::{RetriedItem, RetryOutcome};
pub use tenants::{WebhookAttempt, new_api_key, new_webhook_secret};
pub use uploads::{
    ExpiredBatch, MarkOutcome, NewUpload, Upload, UploadCursor, UploadPage, UploadUse,
};

/// The channel every job status change and counter update is announced on (with
/// `pg_notify`, in the transaction that makes it), as JSON
/// `{"id", "status", "total", "done", "failed", "skipped"}`.
pub const JOB_EVENTS_CHANNEL: &str = "offload_job_events";

/// Handle on the job-status tables. Cheap to clone (it holds the pool).
#[derive(Clone, Debug)]
pub struct JobStore {
    pool: PgPool,
}

impl JobStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("idempotency key {key:?} was already used with a different request")]
    IdempotencyConflict { key: String },
    #[error("job {0} does not exist")]
    UnknownJob(JobId),
    #[error("job {job_id} has no work item {seq}")]
    UnknownItem { job_id: JobId, seq: u32 },
    #[error("job {job_id} holds a value the store cannot read: {problem}")]
    Corrupt { job_id: JobId, problem: String },
    #[error("upload {id} holds a value the store cannot read: {problem}")]
    CorruptUpload { id: uuid::Uuid, problem: String },
    #[error("upload {0} is being deleted")]
    UploadDeleted(uuid::Uuid),
    #[error("job store query failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// Progress counters of a job. `total` is `None` until planning has recorded every item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: Option<u32>,
    pub done: u32,
    pub failed: u32,
    /// Items not processed because the job was cancelled.
    pub skipped: u32,
}

impl Progress {
    /// Every planned item has an outcome.
    pub fn is_complete(&self) -> bool {
        self.total == Some(self.done + self.failed + self.skipped)
    }
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub status: JobStatus,
    pub params: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub progress: Progress,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What a caller asks to create.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// SHA-256 over the kind and the canonical JSON of the parameters (serde_json keeps
    /// object keys sorted), so "the same request" does not depend on key order.
    pub fn request_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.kind.as_str().as_bytes());
        h.update([0]);
        h.update(self.params.to_string().as_bytes());
        h.finalize().into()
    }
}

fn to_u32(job_id: JobId, what: &str, v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        job_id,
        problem: format!("{what} = {v}"),
    })
}
