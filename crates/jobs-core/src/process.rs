//! Typed outcomes of processing one work item.
//!
//! A processor returns `Retryable` when trying again later may succeed (a timeout, a 5xx, a
//! 429, a lost connection): the worker abandons the message with a back-off and the queue's
//! delivery count decides when to give up. It returns `Fatal` when no retry can help (a
//! malformed envelope, a dataset that no longer exists): the worker dead-letters the message
//! at once, with the reason, and the item is counted failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("retryable: {reason}")]
    Retryable {
        reason: String,
        /// A delay the source asked for (`Retry-After`), overriding the worker's back-off.
        retry_after: Option<Duration>,
    },
    #[error("fatal: {reason}")]
    Fatal { reason: String },
    /// Finalizers only: the job ends `failed` for a reason of its own (a rule of its kind,
    /// such as too many rejected rows), and `result` is recorded all the same, so that what
    /// it describes (a report) stays reachable. A processor returning it is `Fatal`.
    #[error("job failed: {reason}")]
    JobFailed {
        reason: String,
        result: serde_json::Value,
    },
}

impl ProcessError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(reason: impl Into<String>, after: Duration) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: Some(after),
        }
    }

    pub fn fatal(reason: impl Into<String>) -> Self {
        Self::Fatal {
            reason: reason.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Retryable { reason, .. }
            | Self::Fatal { reason }
            | Self::JobFailed { reason, .. } => reason,
        }
    }
}

/// Back-off before a retried item is visible again: exponential in the delivery count, capped,
/// with full jitter so that items failing together do not come back together.
pub fn backoff(delivery_count: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << delivery_count.saturating_sub(1).min(16));
    let ceiling = exp.min(cap);
    ceiling.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        for attempt in 1..40 {
            let d = backoff(attempt, Duration::from_millis(500), cap);
            assert!(d <= cap, "attempt {attempt}: {d:?}");
            let bound = Duration::from_millis(500).saturating_mul(1 << (attempt - 1).min(16));
            assert!(d <= bound.min(cap));
        }
    }

    #[test]
    fn errors_say_what_kind_they_are() {
        let e = ProcessError::retry_after("429 from source", Duration::from_secs(3));
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "retryable: 429 from source");
        let f = ProcessError::fatal("dataset `x` is not configured");
        assert!(!f.is_retryable());
        assert_eq!(f.reason(), "dataset `x` is not configured");
    }
}
