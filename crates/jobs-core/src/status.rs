//! The job status state machine, enforced in one place.
//!
//! ```text
//! queued ─► planning ─► running ─► finalizing ─► succeeded
//!   │          │         ▲ │            │
//!   │          │         │ │            └────────► failed
//!   │          ├─────────┼─┴─────────────────────► failed
//!   │          │         └── retry-failed ───────── failed
//!   ├──────────┴─► cancelling ─► cancelled
//!   └────────────────────────────► cancelled
//! ```
//!
//! `queued` and `planning` jobs may also fail (a plan that cannot be made). A job in
//! `finalizing` is past the point of cancellation: its result is being assembled. The one
//! way out of a terminal status is `failed → running`, taken only when the job's owner asks
//! for its failed items to be sent again (`POST /v1/jobs/{id}/retry-failed`): the store
//! moves those items back to pending in the same transaction, so the job's counters and
//! items agree and the job ends again through the normal path. The store
//! writes every status change as `UPDATE … WHERE status = ANY(sources_of(to))`, so a change
//! that the machine forbids can never reach the database, whoever attempts it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Planning,
    Running,
    Finalizing,
    Succeeded,
    Failed,
    Cancelling,
    Cancelled,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a job cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        Self::Queued,
        Self::Planning,
        Self::Running,
        Self::Finalizing,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Planning => "planning",
            Self::Running => "running",
            Self::Finalizing => "finalizing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// The job has ended. Only `failed` has a way out: `running` again, when its failed
    /// items are retried on request.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The statuses from which `to` may be entered. This table is the state machine.
    pub fn sources_of(to: JobStatus) -> &'static [JobStatus] {
        use JobStatus::*;
        match to {
            Queued => &[],
            Planning => &[Queued],
            // Failed: retrying a finished job's failed items (`JobStore::retry_failed_in`).
            Running => &[Planning, Failed],
            Finalizing => &[Running],
            Succeeded => &[Finalizing],
            Failed => &[Queued, Planning, Running, Finalizing],
            Cancelling => &[Planning, Running],
            Cancelled => &[Queued, Cancelling],
        }
    }

    pub fn can_become(self, to: JobStatus) -> bool {
        Self::sources_of(to).contains(&self)
    }

    pub fn transition(self, to: JobStatus) -> Result<JobStatus, InvalidTransition> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_is_allowed() {
        let mut s = Queued;
        for next in [Planning, Running, Finalizing, Succeeded] {
            s = s.transition(next).unwrap();
        }
        assert_eq!(s, Succeeded);
    }

    #[test]
    fn terminal_statuses_have_no_way_out_but_a_retry() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                let retry = (from, to) == (Failed, Running);
                assert_eq!(from.can_become(to), retry, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn forbidden_transitions_name_both_ends() {
        assert_eq!(
            Queued.transition(Succeeded),
            Err(InvalidTransition {
                from: Queued,
                to: Succeeded
            })
        );
        assert_eq!(
            Finalizing.transition(Cancelling).unwrap_err().to_string(),
            "a job cannot go from finalizing to cancelling"
        );
        assert!(!Running.can_become(Queued));
        assert!(!Cancelling.can_become(Running));
    }

    #[test]
    fn every_status_round_trips_as_a_string() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(
            "done".parse::<JobStatus>(),
            Err(UnknownStatus("done".into()))
        );
    }
}
