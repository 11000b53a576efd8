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

/// Runs `work` (a processor's or a finalizer's), turning a panic into a retryable error
/// that names it: a bug met by one item fails that item (after its deliveries, with the
/// panic's text as its error), not the worker loop that ran it.
pub async fn panics_as_errors<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, ProcessError>>,
) -> Result<T, ProcessError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(r) => r,
        Err(payload) => {
            let text = crate::supervise::panic_text(payload.as_ref());
            tracing::error!(what, panic = %text, "a panic while processing; counted as a failed attempt");
            Err(ProcessError::retryable(format!("{what} panicked: {text}")))
        }
    }
}

/// Back-off before a retried item is visible again: exponential in the delivery count,
/// capped, with "equal jitter" — between half the ceiling and the ceiling — so that items
/// failing together do not come back together, and yet the waits add up to a known least
/// time: an outage shorter than that cannot use up an item's deliveries (see
/// [`least_total_backoff`]). Full jitter could draw near-zero waits and burn them in
/// seconds.
pub fn backoff(delivery_count: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = backoff_ceiling(delivery_count, base, cap);
    ceiling.mul_f64(0.5 + 0.5 * rand::random::<f64>())
}

fn backoff_ceiling(delivery_count: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << delivery_count.saturating_sub(1).min(16));
    exp.min(cap)
}

/// The least time [`backoff`] waits in all before delivery `deliveries`: how long a
/// dependency can be down without an item that fails throughout running out of them.
pub fn least_total_backoff(deliveries: u32, base: Duration, cap: Duration) -> Duration {
    (1..deliveries)
        .map(|n| backoff_ceiling(n, base, cap) / 2)
        .sum()
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
            assert!(d >= bound.min(cap) / 2, "attempt {attempt}: {d:?}");
        }
    }

    /// With the default settings, an item failing on every delivery because a dependency
    /// is down keeps its last delivery for more than four minutes.
    #[test]
    fn the_default_backoff_rides_out_a_four_minute_outage() {
        let cfg = crate::Config::load(None).unwrap();
        let least = least_total_backoff(
            cfg.queue.max_delivery_count,
            cfg.worker.retry_base(),
            cfg.worker.retry_cap(),
        );
        assert!(least >= Duration::from_secs(240), "{least:?}");
        // What the draws of one such item add up to is never less.
        let drawn: Duration = (1..cfg.queue.max_delivery_count)
            .map(|n| backoff(n, cfg.worker.retry_base(), cfg.worker.retry_cap()))
            .sum();
        assert!(drawn >= least, "{drawn:?} < {least:?}");
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
