//! Integration tests of the ingest kind against real Postgres and Azurite.
#![allow(clippy::unwrap_used)]

mod blob_azure;
mod store;
mod support;
