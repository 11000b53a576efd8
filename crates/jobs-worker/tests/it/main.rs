//! The worker's single step against real Postgres: retries, fatal failures, poison
//! messages, lock renewal for slow items, and fan-in through a job kind of the test's own.
#![allow(clippy::unwrap_used)]

mod steps;
