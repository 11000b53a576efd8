//! The settings of a mock source: how big its dataset is and how badly it behaves.
//!
//! Every field is public so tests write `MockSourceOptions { records: 500,
//! ..Default::default() }`; the binary exposes each one as a flag.

use std::time::Duration;

/// The largest dataset a mock source serves. It keeps the paging arithmetic in `u128` and
/// every `updated_at` inside chrono's range (2^40 seconds is about 35,000 years).
pub const MAX_RECORDS: u64 = 1 << 40;

/// How a [`MockSource`](crate::MockSource) looks and misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct MockSourceOptions {
    /// Size of the dataset: records have ids `1..=records`. Records are computed per request,
    /// never held in memory, so a large value costs nothing until it is served.
    pub records: u64,
    /// The largest page the source hands out: a client's `limit`/`per_page` is capped to it,
    /// as real APIs silently cap oversized page requests. It is also the page size when the
    /// client names none.
    pub page_size_max: u32,
    /// Length of each record's `payload` string (ASCII, so bytes = chars): simulates wide rows.
    pub payload_bytes: usize,
    /// Simulated service time: every data request takes at least this long to answer.
    pub latency: Duration,
    /// Simulated flakiness: this fraction (0.0–1.0) of the admitted data requests answers
    /// `500`, at random, after the latency.
    pub error_rate: f64,
    /// Seed of the random choices behind `error_rate`, so a run's sequence of failures is
    /// reproducible (which request gets which draw still depends on arrival order).
    pub seed: u64,
    /// Simulated capacity. With `Some(n)`, a data request that arrives while `n` or more are
    /// already in flight is excess and answers `429 Too Many Requests` with `Retry-After: 1`;
    /// `None` means unlimited.
    pub concurrency_limit: Option<u32>,
    /// Simulated overload slowdown: while the source is over its `concurrency_limit`, every
    /// request (admitted or excess) takes this much longer than `latency`, the way an
    /// overloaded service both throttles and slows down.
    pub overload_penalty: Duration,
    /// Simulated authentication: when set, data requests must carry
    /// `Authorization: Bearer <token>`, else they answer `401`.
    pub auth_token: Option<String>,
}

impl Default for MockSourceOptions {
    fn default() -> Self {
        Self {
            records: 100_000,
            page_size_max: 100,
            payload_bytes: 64,
            latency: Duration::from_millis(20),
            error_rate: 0.0,
            seed: 0,
            concurrency_limit: None,
            overload_penalty: Duration::from_millis(50),
            auth_token: None,
        }
    }
}

/// Why a set of options cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// `records` is above [`MAX_RECORDS`].
    #[error("records must be at most {MAX_RECORDS}, got {0}")]
    TooManyRecords(u64),
    /// `page_size_max` is zero: no page could ever be served.
    #[error("page_size_max must be at least 1")]
    ZeroPageSize,
    /// `error_rate` is not a probability.
    #[error("error_rate must be between 0.0 and 1.0, got {0}")]
    ErrorRate(f64),
}

impl MockSourceOptions {
    /// Checks the options can be served; [`MockSource::start`](crate::MockSource::start)
    /// calls it and refuses invalid options.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.records > MAX_RECORDS {
            return Err(OptionsError::TooManyRecords(self.records));
        }
        if self.page_size_max == 0 {
            return Err(OptionsError::ZeroPageSize);
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(OptionsError::ErrorRate(self.error_rate));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(MockSourceOptions::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_what_cannot_be_served() {
        let invalid = |opts: MockSourceOptions| opts.validate().is_err();
        assert!(invalid(MockSourceOptions {
            records: MAX_RECORDS + 1,
            ..Default::default()
        }));
        assert!(invalid(MockSourceOptions {
            page_size_max: 0,
            ..Default::default()
        }));
        assert!(invalid(MockSourceOptions {
            error_rate: 1.5,
            ..Default::default()
        }));
        assert!(invalid(MockSourceOptions {
            error_rate: f64::NAN,
            ..Default::default()
        }));
    }
}
