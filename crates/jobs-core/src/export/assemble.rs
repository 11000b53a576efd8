//! Assembling an export's parts into one result object, in key order.
//!
//! The parts are streamed one after the other into a single upload, counting bytes and the
//! SHA-256 as they pass; nothing holds more than a chunk in memory. Re-running an assembly
//! writes the same object again. Parts are deleted with [`delete_parts`] only after the job
//! has recorded its result, so a finalization cut short can always be run again.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::part::PartOutput;
use super::{ExportFormat, result_path};
use crate::blob::{BlobError, BlobStore};
use crate::id::JobId;

/// The finished export, stored as the job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    pub path: String,
    pub format: ExportFormat,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub parts: u32,
}

pub async fn assemble(
    blobs: &BlobStore,
    job_id: JobId,
    format: ExportFormat,
    parts: &[PartOutput],
) -> Result<ExportResult, BlobError> {
    let path = result_path(job_id, format);
    let mut writer = blobs.writer(&path).await?;
    for part in parts {
        let copied: Result<(), BlobError> = async {
            let mut stream = blobs.read(&part.path).await?;
            while let Some(chunk) = stream.next().await {
                writer.write(&chunk?).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            writer.abort().await;
            return Err(e);
        }
    }
    let written = writer.finish().await?;
    Ok(ExportResult {
        path,
        format,
        rows: parts.iter().map(|p| p.rows).sum(),
        bytes: written.bytes,
        sha256: written.sha256,
        parts: parts.len() as u32,
    })
}

/// Deletes assembled parts (best effort: a part left behind is only wasted space).
pub async fn delete_parts(blobs: &BlobStore, parts: &[PartOutput]) {
    for part in parts {
        if let Err(e) = blobs.delete(&part.path).await {
            tracing::warn!(path = %part.path, error = %e, "could not delete an assembled part");
        }
    }
}
