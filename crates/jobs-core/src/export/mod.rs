//! Exports: the request a user submits ([`spec`]), the SQL it becomes ([`sql`]), how it is
//! split into work items ([`plan`]), how one item becomes a part file ([`part`]), and how
//! the parts become one result ([`assemble`]).

pub mod assemble;
pub mod part;
pub mod plan;
pub mod spec;
pub mod sql;

use crate::id::JobId;
use crate::kind::WorkKind;

pub use spec::{CheckError, ExportFormat, ExportSpec, Filter, FilterOp, Invalid};

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
