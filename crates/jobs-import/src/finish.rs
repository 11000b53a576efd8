//! An import's fan-in: the items' counts summed, and their rejects files assembled into the
//! one report the job links to (`rejects_path` becomes `rejects_url` in the job document).

use serde::{Deserialize, Serialize};

use super::load::ItemOutput;
use super::{ImportFormat, ImportSpec, rejects};
use jobs_core::blob::{BlobError, BlobStore};
use jobs_core::id::JobId;

/// The finished import, stored as the job's result (also when too many rows were rejected
/// and the job failed: the report stays reachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    pub dataset: String,
    pub format: ImportFormat,
    pub dry_run: bool,
    /// Records read (blank lines aside, and the CSV header).
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub max_rejected: u64,
    /// The rejects report (`line,column,value,reason`), when a row was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_bytes: Option<u64>,
}

impl ImportResult {
    /// More rows were rejected than the request allows: the job fails (with this result).
    pub fn too_many_rejected(&self) -> bool {
        self.rejected > self.max_rejected
    }
}

/// Sums the items' outputs (in item order) and writes the report if any row was rejected.
pub async fn finish(
    blobs: &BlobStore,
    job_id: JobId,
    spec: &ImportSpec,
    items: &[ItemOutput],
) -> Result<ImportResult, BlobError> {
    let sum = |f: fn(&ItemOutput) -> u64| items.iter().map(f).sum();
    let mut result = ImportResult {
        dataset: spec.dataset.clone(),
        format: spec.format,
        dry_run: spec.dry_run,
        rows: sum(|i| i.rows),
        inserted: sum(|i| i.inserted),
        updated: sum(|i| i.updated),
        unchanged: sum(|i| i.unchanged),
        rejected: sum(|i| i.rejected),
        max_rejected: spec.max_rejected,
        rejects_path: None,
        rejects_bytes: None,
    };
    let parts: Vec<String> = items
        .iter()
        .filter_map(|i| i.rejects_path.clone())
        .collect();
    if !parts.is_empty() {
        let (path, written) = rejects::assemble(blobs, job_id, &parts).await?;
        result.rejects_path = Some(path);
        result.rejects_bytes = Some(written.bytes);
    }
    Ok(result)
}

/// Deletes the items' rejects files once the report holds them (best effort).
pub async fn delete_parts(blobs: &BlobStore, items: &[ItemOutput]) {
    for path in items.iter().filter_map(|i| i.rejects_path.as_deref()) {
        if let Err(e) = blobs.delete(path).await {
            tracing::warn!(path, error = %e, "could not delete an item's rejects file");
        }
    }
}
