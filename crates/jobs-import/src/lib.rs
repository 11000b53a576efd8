//! The `import` job kind, registered through the SDK ([`kind`]) like any team's own kind;
//! its job type is in [`job`], its processors and finalizer in `worker.rs`.
//!
//! Imports: a file a tenant uploaded (CSV or NDJSON) upserted into a configured dataset's
//! table by key.
//!
//! - [`spec`]: the request, checked at submit against the dataset, the table and the
//!   upload (for CSV, its header);
//! - [`split`]: the plan — the file cut into byte ranges of about `import.chunk_bytes` at
//!   record boundaries, each with the line number it starts on, in one streaming pass;
//! - [`csv`], [`ndjson`]: records of one range, parsed the way Postgres's `COPY … csv`
//!   reads them (an unquoted empty field is NULL, a quoted one the empty string), so what an
//!   export wrote imports back unchanged;
//! - [`target`]: what the table says about its columns (types, NOT NULL, defaults);
//! - [`rows`], [`load`], [`stage`], [`upsert`]: one range in one transaction — `COPY`
//!   straight into the table when every row is new and valid, else staged and upserted by
//!   key, every bad row isolated and reported, never the whole range failed for one row;
//! - [`rejects`]: the rejected rows, per item and then as one report (`line,column,value,
//!   reason`); [`finish`]: the fan-in (counts summed, report assembled);
//! - [`job`]: the job type (validation in the API, planning in the enqueuer).
//!
//! Each work item commits on its own: rows of items that succeeded stay loaded even when
//! the job fails (for too many rejected rows, say). A dry run rolls every item back.

pub mod csv;
pub mod finish;
pub mod job;
pub mod load;
pub mod ndjson;
pub mod rejects;
pub mod rows;
pub mod spec;
pub mod split;
pub mod stage;
pub mod target;
pub mod upsert;
mod worker;

use serde::{Deserialize, Serialize};

use jobs_core::id::JobId;
use jobs_core::kind::WorkKind;

pub use job::ImportJob;
pub use spec::{ImportFormat, ImportSpec};

/// The job kind (also the request field holding its parameters).
pub const KIND: jobs_core::JobKind = jobs_core::JobKind::from_static("import");
/// Work item kind of one byte range of an import.
pub const CHUNK: WorkKind = WorkKind::from_static("import.chunk");
/// Work item kind of an import's fan-in (counts and the rejects report).
pub const FINALIZE: WorkKind = WorkKind::from_static("import.finalize");

/// The byte range of one work item: bytes `start..end` of the upload, a whole number of
/// records, the first of which begins on (1-based) line `line` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
    pub line: u64,
}

pub use jobs_core::uploads::upload_path;

/// The rejected rows of item `seq` (deterministic, so a redelivery overwrites it).
pub fn rejects_part_path(job_id: JobId, seq: u32) -> String {
    format!("imports/{job_id}/rejects/{seq:06}.csv")
}

/// The job's rejects report: every item's rejects, in line order, under one header.
pub fn report_path(job_id: JobId) -> String {
    format!("imports/{job_id}/{job_id}-rejects.csv")
}

/// The import kind, as a deployment registers it (`Kinds::with`).
pub fn kind() -> jobs_sdk::Kind {
    use std::sync::Arc;
    jobs_sdk::Kind {
        job_type: Arc::new(ImportJob),
        processors: vec![Arc::new(worker::ImportChunk)],
        finalizer: Arc::new(worker::ImportFinalizer),
    }
}
