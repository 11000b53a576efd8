//! End-to-end tests of the whole stack (API, enqueuer, worker, notifier) in one process,
//! against real Postgres, real local files and a real webhook receiver on loopback.
#![allow(clippy::unwrap_used)]

mod api;
mod azure;
mod cancel;
mod export;
mod support;
mod webhooks;
