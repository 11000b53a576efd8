//! Integration tests of jobs-core against real Postgres. Panicking on failure is the point here.
#![allow(clippy::unwrap_used)]

mod store;
mod support;
