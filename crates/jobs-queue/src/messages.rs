//! The queues the services talk through, and the control messages on them.
//!
//! | queue | carries | consumed by |
//! |---|---|---|
//! | `offload.jobs` | [`JobMessage::Requested`] | enqueuer (plans the job) |
//! | `offload.work` | [`WorkItem`]s, including each job's finalize item | workers |
//! | `offload.events` | [`JobMessage::Finished`] | notifier |
//!
//! Message ids are deterministic (`{job_id}:requested`, `{job_id}:{seq}`,
//! `{job_id}:finished`), so a re-send after a crash is dropped by duplicate detection.

use serde::{Deserialize, Serialize};

use crate::{OutgoingMessage, QueueName};
use jobs_core::envelope::{MAX_ENVELOPE_BYTES, TraceContext, WorkItem};
use jobs_core::id::JobId;
use jobs_core::status::JobStatus;

pub const JOBS_QUEUE: &str = "offload.jobs";
pub const WORK_QUEUE: &str = "offload.work";
pub const EVENTS_QUEUE: &str = "offload.events";

/// The three queue names, parsed.
#[derive(Debug, Clone)]
pub struct Queues {
    pub jobs: QueueName,
    pub work: QueueName,
    pub events: QueueName,
}

impl Default for Queues {
    fn default() -> Self {
        let parse = |s| QueueName::parse(s).unwrap_or_else(|e| panic!("built-in queue name: {e}"));
        Self {
            jobs: parse(JOBS_QUEUE),
            work: parse(WORK_QUEUE),
            events: parse(EVENTS_QUEUE),
        }
    }
}

/// Control messages about a whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum JobMessage {
    /// A job was submitted and must be planned.
    #[serde(rename = "job.requested")]
    Requested {
        job_id: JobId,
        correlation_id: String,
        #[serde(default)]
        trace: TraceContext,
    },
    /// A job reached a terminal status and its owner must be told.
    #[serde(rename = "job.finished")]
    Finished {
        job_id: JobId,
        status: JobStatus,
        #[serde(default)]
        trace: TraceContext,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("control message is not valid: {0}")]
pub struct BadMessage(String);

impl JobMessage {
    pub fn message_id(&self) -> String {
        match self {
            Self::Requested { job_id, .. } => format!("{job_id}:requested"),
            Self::Finished { job_id, .. } => format!("{job_id}:finished"),
        }
    }

    pub fn job_id(&self) -> JobId {
        match self {
            Self::Requested { job_id, .. } | Self::Finished { job_id, .. } => *job_id,
        }
    }

    pub fn trace(&self) -> &TraceContext {
        match self {
            Self::Requested { trace, .. } | Self::Finished { trace, .. } => trace,
        }
    }

    pub fn to_message(&self) -> OutgoingMessage {
        // Serializing a plain enum of ids cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        OutgoingMessage::new(self.message_id(), body)
    }

    pub fn decode(body: &[u8]) -> Result<Self, BadMessage> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(BadMessage(format!(
                "{} bytes is over the limit",
                body.len()
            )));
        }
        serde_json::from_slice(body).map_err(|e| BadMessage(e.to_string()))
    }
}

/// A work item as a queue message.
pub trait WorkItemMessage {
    fn to_message(&self) -> Result<OutgoingMessage, jobs_core::envelope::EnvelopeError> {
        self.to_message_in_round(0)
    }

    /// The message of this item in retry round `round` (see
    /// [`WorkItem::message_id_in_round`]).
    fn to_message_in_round(
        &self,
        round: u32,
    ) -> Result<OutgoingMessage, jobs_core::envelope::EnvelopeError>;
}

impl WorkItemMessage for WorkItem {
    fn to_message_in_round(
        &self,
        round: u32,
    ) -> Result<OutgoingMessage, jobs_core::envelope::EnvelopeError> {
        Ok(
            OutgoingMessage::new(self.message_id_in_round(round), self.encode()?)
                .with_property("kind", self.kind.as_str()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_with_stable_type_tags() {
        let m = JobMessage::Finished {
            job_id: JobId::new(),
            status: JobStatus::Succeeded,
            trace: TraceContext::default(),
        };
        let out = m.to_message();
        assert_eq!(out.message_id, format!("{}:finished", m.job_id()));
        let text = String::from_utf8(out.body.to_vec()).unwrap();
        assert!(text.contains(r#""type":"job.finished""#), "{text}");
        assert_eq!(JobMessage::decode(&out.body).unwrap(), m);
        assert!(JobMessage::decode(b"{\"type\":\"job.exploded\"}").is_err());
    }
}
