//! Integration tests of the ingest kind against real Postgres, Azurite and mock sources on
//! loopback: the page store, and ingests through the whole pipeline.
#![allow(clippy::unwrap_used)]

mod blob_azure;
mod front;
mod guard;
mod pipeline;
mod store;
mod support;
