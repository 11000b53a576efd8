//! Schedules: a job request fired on a cron expression in a time zone.
//!
//! The API creates, lists, changes, pauses, resumes and deletes schedules (the job request
//! is validated there, as `POST /v1/jobs` validates it); the enqueuers fire them
//! (`jobs_enqueuer::schedules`). [`timetable`] says when ticks fall, across time zone changes
//! and after downtime; [`change`] what a schedule may hold and how a change moves its next
//! tick (a new cron expression or time zone: the first tick after now); [`ScheduleStore`]
//! keeps schedules and the record of fired ticks in Postgres, where the claim that makes a
//! tick fire once lives.

pub mod change;
mod store;
pub mod timetable;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{JobId, TenantId};
use crate::invalid::Invalid;
use crate::kind::JobKind;
use crate::status::JobStatus;

pub use change::ScheduleChange;
pub use store::{NewSchedule, ScheduleCursor, SchedulePage, ScheduleStore};
pub use timetable::{CatchUp, Timetable};

/// The prefix of the idempotency keys of scheduled jobs (`schedule:{id}:{tick}`), reserved:
/// the API refuses it on submissions so a tenant's key can never collide with a tick's.
pub const IDEMPOTENCY_PREFIX: &str = "schedule:";

/// Identifies one schedule (a UUIDv7, like job ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(Uuid);

impl ScheduleId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ScheduleId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ScheduleId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    pub id: ScheduleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// The job each tick creates: its kind and its stored parameters (`{kind: {…},
    /// "notify"?}`), as a job made by `POST /v1/jobs` would hold them.
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub enabled: bool,
    /// `None` while paused or when the expression never matches again.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<JobId>,
    pub skipped_ticks: u64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    pub fn timetable(&self) -> Result<Timetable, Invalid> {
        Timetable::parse(&self.cron, &self.timezone)
    }

    /// The idempotency key of the job for `tick`.
    pub fn job_key(&self, tick: DateTime<Utc>) -> String {
        format!(
            "{IDEMPOTENCY_PREFIX}{}:{}",
            self.id,
            tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// One fired tick.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleRun {
    pub tick_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// The job the tick made (`None` if it made none, or the job was deleted since).
    pub job_id: Option<JobId>,
    pub job_status: Option<JobStatus>,
    /// Older due ticks skipped when this one fired.
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {schedule_id} holds a value the store cannot read: {problem}")]
    Corrupt {
        schedule_id: ScheduleId,
        problem: String,
    },
    #[error("schedule store query failed: {0}")]
    Db(#[from] sqlx::Error),
}
