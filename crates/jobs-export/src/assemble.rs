//! Assembling an export's parts into one result object, in key order.
//!
//! Where the blob store can copy server-side (Azure with an account key or an identity,
//! [`BlobStore::compose`]), the service stages every part as blocks of the result and
//! commits the block list in order: the upload no longer passes through the worker, however
//! large the result. The SHA-256 the job records still needs every byte, so the committed
//! result is then read back in ranged reads and hashed (bounded memory, but the download
//! does pass through the worker: that is the trade-off for an exact checksum).
//!
//! Elsewhere (local files, an Azure SAS token), or when the service refuses the copy (an
//! emulator without Put Block From URL answers 501), the parts are streamed one after the
//! other into a single upload, counting bytes and the SHA-256 as they pass; nothing holds
//! more than a chunk in memory. A refusal is logged as a warning; after a 501 the store
//! stops trying, so it is warned about once.
//!
//! Re-running an assembly writes the same object again. Parts are deleted with
//! [`delete_parts`] only after the job has recorded its result, so a finalization cut short
//! can always be run again.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::part::PartOutput;
use super::{ExportFormat, result_path};
use jobs_core::blob::{BlobError, BlobStore, Written, hex};
use jobs_core::id::JobId;

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

/// Writes the result of `parts` (in the given order) and describes it; server-side where
/// the store can, streamed otherwise (see the module doc).
pub async fn assemble(
    blobs: &BlobStore,
    job_id: JobId,
    format: ExportFormat,
    parts: &[PartOutput],
) -> Result<ExportResult, BlobError> {
    let path = result_path(job_id, format);
    let written = match compose(blobs, &path, parts).await {
        Some(written) => written?,
        None => stream_parts(blobs, &path, parts).await?,
    };
    Ok(ExportResult {
        path,
        format,
        rows: parts.iter().map(|p| p.rows).sum(),
        bytes: written.bytes,
        sha256: written.sha256,
        parts: parts.len() as u32,
    })
}

/// Assembles server-side and hashes the result, or `None` when the store cannot or the
/// service refused (warned about here), for the caller to stream instead. Errors after the
/// commit (reading the result back) are returned: the result is there, streaming it all
/// again would not help.
async fn compose(
    blobs: &BlobStore,
    path: &str,
    parts: &[PartOutput],
) -> Option<Result<Written, BlobError>> {
    if !blobs.can_compose() {
        return None;
    }
    let sources: Vec<&str> = parts.iter().map(|p| p.path.as_str()).collect();
    if let Err(e) = blobs.compose(path, &sources).await {
        tracing::warn!(
            path,
            error = %e,
            "server-side assembly failed; streaming the parts through this worker instead"
        );
        return None;
    }
    Some(digest(blobs, path).await)
}

/// The size and SHA-256 of an object, read back in ranged reads.
async fn digest(blobs: &BlobStore, path: &str) -> Result<Written, BlobError> {
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    let mut stream = blobs.read(path).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Ok(Written {
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

/// Streams the parts one after the other into one upload of `path`.
async fn stream_parts(
    blobs: &BlobStore,
    path: &str,
    parts: &[PartOutput],
) -> Result<Written, BlobError> {
    let mut writer = blobs.writer(path).await?;
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
    writer.finish().await
}

/// Deletes assembled parts (best effort: a part left behind is only wasted space).
pub async fn delete_parts(blobs: &BlobStore, parts: &[PartOutput]) {
    for part in parts {
        if let Err(e) = blobs.delete(&part.path).await {
            tracing::warn!(path = %part.path, error = %e, "could not delete an assembled part");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers run assemblies in spawned tasks: the future must be `Send` (checked when
    /// this compiles; a stream over borrowed data can silently lose it).
    #[test]
    fn assembly_is_send() {
        fn send<T: Send>(_: &T) {}
        let blobs = BlobStore::local(&std::env::temp_dir()).unwrap();
        let assembly = assemble(&blobs, JobId::new(), ExportFormat::Csv, &[]);
        send(&assembly);
    }
}
