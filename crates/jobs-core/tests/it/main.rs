//! Integration tests of jobs-core against real Postgres. Panicking on failure is the point here.
#![allow(clippy::unwrap_used)]

mod blob_azure;
mod consume;
mod ingest_store;
mod queue_contract;
mod queue_postgres;
mod queue_servicebus;
mod store;
mod support;
