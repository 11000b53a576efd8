//! End-to-end tests of the whole stack (API, enqueuer, worker, notifier) in one process,
//! against real Postgres, real local files and a real webhook receiver on loopback.
#![allow(clippy::unwrap_used)]

mod api;
mod api_errors;
mod azure;
mod cancel;
mod cli_output;
mod export;
mod failed_results;
mod import;
mod import_azure;
mod import_errors;
mod import_locks;
mod ingest;
mod pool;
mod schedules;
mod servicebus;
mod support;
mod uploads;
mod uploads_retention;
mod webhooks;
