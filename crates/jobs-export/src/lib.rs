//! The `export` job kind, registered through the SDK ([`kind`]) like any team's own kind;
//! its job type is in [`job`], its processors and finalizer in `worker.rs`.
//!
//! Exports: the request a user submits ([`spec`]), the SQL it becomes ([`sql`]), how it is
//! split into work items ([`plan`]), how one item becomes a part file ([`part`]), and how
//! the parts become one result ([`assemble`]).

pub mod assemble;
pub mod job;
pub mod part;
pub mod plan;
pub mod spec;
pub mod sql;
mod worker;

use jobs_core::id::JobId;
use jobs_core::kind::WorkKind;

pub use job::ExportJob;
pub use spec::{CheckError, ExportFormat, ExportSpec, Filter, FilterOp, Invalid};

/// The job kind (also the request field holding its parameters).
pub const KIND: jobs_core::JobKind = jobs_core::JobKind::from_static("export");
/// Work item kind of one key range of an export.
pub const CHUNK: WorkKind = WorkKind::from_static("export.chunk");
/// Work item kind of an export's final assembly.
pub const FINALIZE: WorkKind = WorkKind::from_static("export.finalize");

/// The key range of one part: keys `> after` and `<= upto` (open where `None`), as the
/// key's text form, cast back to the key's type in SQL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRange {
    pub after: Option<String>,
    pub upto: Option<String>,
}

pub fn part_path(job_id: JobId, seq: u32, format: ExportFormat) -> String {
    format!("exports/{job_id}/parts/{seq:06}.{}", format.extension())
}

pub fn result_path(job_id: JobId, format: ExportFormat) -> String {
    format!("exports/{job_id}/{job_id}.{}", format.extension())
}

/// The export kind, as a deployment registers it (`Kinds::with`).
pub fn kind() -> jobs_sdk::Kind {
    use std::sync::Arc;
    jobs_sdk::Kind {
        job_type: Arc::new(job::ExportJob),
        processors: vec![Arc::new(worker::ExportChunk)],
        finalizer: Arc::new(worker::ExportFinalizer),
    }
}
