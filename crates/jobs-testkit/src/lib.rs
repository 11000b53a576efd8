//! Offload's test kit, for the tests of every crate that needs more than a database:
//!
//! - [`TestDb`]: a throwaway database per test, migrated, dropped at the end (it lives in
//!   `jobs_core::testing`, re-exported here, because the core's and the queue's own tests
//!   need it without a stack);
//! - [`Stack`]: the services (API, enqueuer, worker, notifier: the [`Roles`] a test asks
//!   for) on a test database, the API on a loopback port, a `things` dataset on a table made
//!   to break CSV writers ([`tricky_table`]), and the requests tests make of it;
//! - [`eventually`]: waits for a condition against a deadline, instead of hand-written
//!   deadline loops or sleeps;
//! - [`webhook::Receiver`]: a webhook endpoint on loopback that records every call and
//!   answers as scripted, and a Standard Webhooks signature check written from the
//!   specification;
//! - [`assert_export_equals_copy`]: an export's file against what Postgres's own `COPY`
//!   prints for the same rows, byte for byte;
//! - [`schedules`]: schedule requests and the enqueuer's firing, for schedule tests.
//!
//! Tests live in the crate that owns the behaviour (the API's contract in `jobs-api`,
//! firing in `jobs-enqueuer`, webhooks in `jobs-notifier`, each kind in its crate); the
//! whole-stack and command-line tests stay in `jobs-cli`.
#![allow(clippy::unwrap_used)] // A test kit: a failed step is a failed test, said at once.

pub mod schedules;
mod stack;
pub mod webhook;

pub use jobs_cli::Roles;
pub use jobs_core::testing::{AZURITE, TestDb, azurite, eventually};
pub use stack::{
    KEY, Stack, THINGS_COLUMNS, assert_export_equals_copy, toml as stack_toml, tricky_table,
    upload, upload_as,
};
