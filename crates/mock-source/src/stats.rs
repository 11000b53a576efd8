//! What the source has seen since it started (or since the last reset): the numbers an
//! ingest test or benchmark asserts on or reports.
//!
//! Only data requests (`/records...`) are counted; `/stats` itself is not. Once every
//! request has been answered, `requests == ok + throttled + errors + rejected`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A snapshot of the counters, as served by `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Data requests received.
    pub requests: u64,
    /// Answered `2xx`.
    pub ok: u64,
    /// Answered `429` (over the concurrency limit).
    pub throttled: u64,
    /// Answered `5xx` (the injected failures of `error_rate`).
    pub errors: u64,
    /// Answered another `4xx`: `400` bad parameters, `401` bad credentials.
    pub rejected: u64,
    /// Data requests in flight when the snapshot was taken.
    #[serde(default)]
    pub in_flight: u64,
    /// The most data requests in flight at once.
    pub max_in_flight: u64,
    /// Records sent in `2xx` pages.
    pub records_served: u64,
    /// Microseconds data requests spent at the source, summed over the requests answered
    /// (from arrival to the answer): the source's real latency, and with the wall time the
    /// mean number of requests it served at once.
    #[serde(default)]
    pub busy_micros: u64,
    /// Requests that paid the overload penalty: the throttled ones, and admitted ones the
    /// source was overloaded while serving.
    #[serde(default)]
    pub penalized: u64,
}

/// The live counters behind [`Stats`], shared by every request.
///
/// Each counter is its own relaxed atomic: a snapshot taken while requests are running may
/// mix moments, which is fine for monitoring; a snapshot of a quiet source is exact.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    throttled: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    /// Data requests being handled right now; never reset (they are really in flight).
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    records_served: AtomicU64,
    busy_micros: AtomicU64,
    penalized: AtomicU64,
}

/// How a data request was answered, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Throttled,
    Error,
    Rejected,
}

impl Counters {
    /// Counts a new data request as received and in flight; returns how many are in flight
    /// now, itself included. Pair with [`Counters::leave`].
    pub(crate) fn enter(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        in_flight
    }

    /// The request counted by [`Counters::enter`] is no longer in flight, after `busy`
    /// at the source.
    pub(crate) fn leave(&self, busy: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let micros = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        self.busy_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn answered(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Throttled => &self.throttled,
            Outcome::Error => &self.errors,
            Outcome::Rejected => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn penalized(&self) {
        self.penalized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn served(&self, records: u64) {
        self.records_served.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            requests: load(&self.requests),
            ok: load(&self.ok),
            throttled: load(&self.throttled),
            errors: load(&self.errors),
            rejected: load(&self.rejected),
            in_flight: load(&self.in_flight),
            max_in_flight: load(&self.max_in_flight),
            records_served: load(&self.records_served),
            busy_micros: load(&self.busy_micros),
            penalized: load(&self.penalized),
        }
    }

    /// Zeroes the counters. `max_in_flight` restarts from the requests still in flight.
    pub(crate) fn reset(&self) {
        for counter in [
            &self.requests,
            &self.ok,
            &self.throttled,
            &self.errors,
            &self.rejected,
            &self.records_served,
            &self.busy_micros,
            &self.penalized,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_the_peak_of_in_flight_requests() {
        let counters = Counters::default();
        assert_eq!(counters.enter(), 1);
        assert_eq!(counters.enter(), 2);
        counters.leave(Duration::from_micros(20_300));
        assert_eq!(counters.enter(), 2);
        counters.answered(Outcome::Ok);
        counters.answered(Outcome::Throttled);
        counters.penalized();
        counters.served(7);
        let stats = counters.snapshot();
        assert_eq!((stats.requests, stats.max_in_flight), (3, 2));
        assert_eq!((stats.ok, stats.throttled, stats.records_served), (1, 1, 7));
        assert_eq!((stats.busy_micros, stats.penalized), (20_300, 1));
    }

    #[test]
    fn reset_keeps_what_is_still_in_flight() {
        let counters = Counters::default();
        counters.enter();
        counters.enter();
        counters.leave(Duration::from_millis(20));
        counters.penalized();
        counters.answered(Outcome::Error);
        counters.reset();
        let stats = counters.snapshot();
        assert_eq!(
            stats,
            Stats {
                in_flight: 1,
                max_in_flight: 1,
                ..Stats::default()
            }
        );
        assert_eq!(counters.in_flight(), 1);
    }
}
