//! The misbehaviour in front of the data routes: authentication, the concurrency limit,
//! latency, the overload slowdown and injected failures, in that order, plus counting.
//!
//! `/stats` routes do not pass through here, so watching the source never disturbs it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use crate::error::ApiError;
use crate::routes::AppState;
use crate::stats::{Counters, Outcome};

/// Axum middleware applying the options' misbehaviour to one data request.
///
/// Every request passes `latency` (from its arrival, on the source's precise
/// [`Clock`](crate::clock::Clock)) before it is answered, throttled or not. A request that
/// arrives over the concurrency limit is answered `429` after `latency + overload_penalty`;
/// an admitted request also pays the penalty when the source went over the limit while it
/// was being served. Injected failures are drawn only for admitted requests.
pub(crate) async fn misbehave(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let counters = &state.counters;
    let in_flight = InFlight::enter(counters);
    if !state.authorized(request.headers()) {
        counters.answered(Outcome::Rejected);
        let challenge = [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
        return (challenge, ApiError::unauthorized()).into_response();
    }

    let excess = state.over_limit(in_flight.count);
    // Overload events so far; an admitted request compares after its service time.
    let overloads_seen = if excess {
        state.overloads.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        state.overloads.load(Ordering::Relaxed)
    };

    // From the request's arrival, on the precise clock.
    state
        .clock
        .sleep_until(in_flight.arrived + state.opts.latency)
        .await;
    let overloaded_meanwhile = state.overloads.load(Ordering::Relaxed) != overloads_seen
        || state.over_limit(counters.in_flight());
    if excess || overloaded_meanwhile {
        counters.penalized();
        state
            .clock
            .sleep_until(Instant::now() + state.opts.overload_penalty)
            .await;
    }

    if excess {
        counters.answered(Outcome::Throttled);
        let retry = [(RETRY_AFTER, HeaderValue::from_static("1"))];
        return (retry, ApiError::throttled()).into_response();
    }
    if state.fail_at_random() {
        counters.answered(Outcome::Error);
        return ApiError::injected_failure().into_response();
    }

    let response = next.run(request).await;
    let status = response.status();
    counters.answered(if status.is_success() {
        Outcome::Ok
    } else if status.is_server_error() {
        Outcome::Error
    } else if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Throttled
    } else {
        Outcome::Rejected
    });
    response
}

impl AppState {
    /// Whether the request carries the configured bearer token (always, when none is set).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.opts.auth_token else {
            return true;
        };
        headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| given == token)
    }

    /// Whether `in_flight` requests exceed the concurrency limit.
    fn over_limit(&self, in_flight: u64) -> bool {
        self.opts
            .concurrency_limit
            .is_some_and(|limit| in_flight > u64::from(limit))
    }

    /// Draws whether this request fails, with probability `error_rate`.
    fn fail_at_random(&self) -> bool {
        if self.opts.error_rate <= 0.0 {
            return false;
        }
        // A panic while holding the lock cannot leave the generator inconsistent.
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_bool(self.opts.error_rate)
    }
}

/// Counts a request as in flight until dropped, so a request whose client hangs up (its
/// future is dropped mid-sleep) stops counting too.
struct InFlight<'a> {
    counters: &'a Counters,
    /// Requests in flight when this one arrived, itself included.
    count: u64,
    arrived: Instant,
}

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        let count = counters.enter();
        Self {
            counters,
            count,
            arrived: Instant::now(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.leave(self.arrived.elapsed());
    }
}
