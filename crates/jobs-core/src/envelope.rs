//! The work item envelope: what travels in a queue message for one unit of work.
//!
//! Messages carry metadata only (ids, ranges, offsets, trace context), never user data or
//! secrets, so an envelope stays far below Service Bus's 256 KB message limit. The message id
//! of a work item is deterministic, `{job_id}:{seq}`, so re-planning a job re-sends the same
//! ids and duplicate detection drops the copies.

use serde::{Deserialize, Serialize};

use crate::id::JobId;
use crate::kind::WorkKind;

/// Upper bound on an encoded envelope; far below Service Bus's 256 KB so that properties and
/// headers always fit too.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// W3C trace context (`traceparent` and optional `tracestate`), so one job is one trace
/// across the API, the enqueuer and every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One unit of work of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub job_id: JobId,
    /// Position of the item in its job's plan, from 0. Unique per job.
    pub seq: u32,
    pub kind: WorkKind,
    /// Kind-specific parameters (a key range, a page window, a byte range): metadata only.
    pub payload: serde_json::Value,
    /// Ties log lines of this item to the request that created the job.
    pub correlation_id: String,
    #[serde(default)]
    pub trace: TraceContext,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("work item envelope is not valid JSON for its schema: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("work item envelope is {size} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge { size: usize },
}

impl WorkItem {
    /// The deterministic message id of this item: `{job_id}:{seq}`.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.job_id, self.seq)
    }

    /// The message id of this item in retry round `round`: `{job_id}:{seq}` for the first
    /// sending, `{job_id}:{seq}:retry-{round}` after that, so duplicate detection tells a
    /// retry from a repeat. Workers find items by the body's `job_id` and `seq`, never by
    /// the message id, so a retried message is handled like the first.
    pub fn message_id_in_round(&self, round: u32) -> String {
        with_round(self.message_id(), round)
    }
}

/// `id` with the retry-round suffix of round `round` (none for round 0).
pub fn with_round(id: String, round: u32) -> String {
    if round == 0 {
        id
    } else {
        format!("{id}:retry-{round}")
    }
}

/// The retry round a message id was sent in (0 without a `:retry-{n}` suffix).
pub fn round_of(message_id: &str) -> u32 {
    message_id
        .rsplit_once(":retry-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

impl WorkItem {
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let bytes = serde_json::to_vec(self)?;
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len() });
        }
        Ok(bytes)
    }

    /// Decodes a message body. A body that does not decode is a poison message: the worker
    /// dead-letters it with this error as the reason instead of crashing or retrying.
    pub fn decode(body: &[u8]) -> Result<Self, EnvelopeError> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge { size: body.len() });
        }
        Ok(serde_json::from_slice(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> WorkItem {
        WorkItem {
            job_id: JobId::new(),
            seq: 7,
            kind: WorkKind::parse("export.chunk").unwrap(),
            payload: serde_json::json!({"from": 1000, "to": 2000}),
            correlation_id: "req-1".into(),
            trace: TraceContext {
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                tracestate: None,
            },
        }
    }

    #[test]
    fn envelopes_round_trip_and_have_deterministic_ids() {
        let it = item();
        assert_eq!(it.message_id(), format!("{}:7", it.job_id));
        assert_eq!(WorkItem::decode(&it.encode().unwrap()).unwrap(), it);
    }

    #[test]
    fn retry_rounds_are_in_the_message_id() {
        let it = item();
        assert_eq!(it.message_id_in_round(0), it.message_id());
        let retried = it.message_id_in_round(3);
        assert_eq!(retried, format!("{}:7:retry-3", it.job_id));
        assert_eq!(round_of(&retried), 3);
        assert_eq!(round_of(&it.message_id()), 0);
        assert_eq!(round_of("garbage:retry-x"), 0);
    }

    #[test]
    fn malformed_and_oversized_bodies_are_named() {
        let err = WorkItem::decode(b"{\"job_id\": 3}").unwrap_err();
        assert!(matches!(err, EnvelopeError::Malformed(_)), "{err}");
        let mut big = item();
        big.payload = serde_json::Value::String("x".repeat(MAX_ENVELOPE_BYTES));
        assert!(matches!(big.encode(), Err(EnvelopeError::TooLarge { .. })));
    }
}
