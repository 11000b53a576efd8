//! The API's own tests: its contract (the OpenAPI document, errors, every route) against a
//! real database, with the other services started only where a test needs a job to run.
#![allow(clippy::unwrap_used)]

mod api;
mod errors;
mod limits;
mod openapi;
mod schedule_changes;
mod schedules;
