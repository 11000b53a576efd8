//! Integration tests of jobs-core against real Postgres. Panicking on failure is the point here.
#![allow(clippy::unwrap_used)]

mod queue_contract;
mod queue_postgres;
mod store;
mod support;
