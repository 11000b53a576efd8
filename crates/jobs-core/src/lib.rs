//! Offload's shared core.
//!
//! Everything the services have in common and nothing HTTP-specific. The queues (the
//! transports, the consume loops, the runtime a service starts with) are `jobs-queue`,
//! built on this crate. What it holds:
//! - [`id`], [`kind`], [`status`], [`envelope`], [`process`]: the domain — job and tenant ids,
//!   stable kind strings, the job status state machine, the work item envelope and typed
//!   processing errors;
//! - [`config`]: the one typed configuration tree, loaded once at start;
//! - [`telemetry`]: tracing subscriber set-up and W3C trace-context propagation;
//! - [`db`]: connecting to Postgres and applying the migrations;
//! - [`store`]: the job-status store (jobs, work items, counters, tenants);
//! - [`blob`]: the blob store (streaming writes, deterministic paths);
//! - [`dataset`], [`export`], [`import`]: the dataset catalog, the export job (request,
//!   plan, parts, assembly) and the import job (uploads split into byte ranges, upserted by
//!   key, rejected rows reported);
//! - [`ingest`]: the ingest job (source APIs, partitions, pages, adaptive concurrency);
//! - [`schedule`]: jobs fired on a cron expression in a time zone;
//! - [`supervise`]: the loops a service runs, restarted when they fail, and liveness;
//! - [`uploads`]: deleting uploads (by hand and by retention) in a crash-safe order.

pub mod blob;
pub mod config;
pub mod dataset;
pub mod db;
pub mod document;
pub mod env;
pub mod envelope;
pub mod id;
pub mod invalid;
pub mod kind;
pub mod listen;
pub mod net;
pub mod process;
pub mod schedule;
pub mod status;
pub mod store;
pub mod supervise;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod uploads;

pub use config::Config;
pub use id::{JobId, TenantId};
pub use kind::{JobKind, WorkKind};
pub use sqlx;
pub use status::JobStatus;
