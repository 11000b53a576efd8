//! Deleting uploads, by hand (`DELETE /v1/uploads/{id}`, in the API) and by retention (the
//! enqueuers' sweep): the order of the record and the blob, in one place.
//!
//! **Record first, then blob, then record.** The row is marked deleted (hiding it from the
//! API, from import validation and from import planning), then the blob is deleted, then
//! the row. The opposite order — blob first — would leave, after a crash between the two,
//! a live record pointing at a missing file: an import could be accepted against it and
//! fail, or worse, an import accepted just before could plan from a file that vanishes
//! under its work items. Marking first means a crash leaves at worst a marked row whose
//! blob may still exist; no reader sees it, and the next sweep deletes the blob (a missing
//! blob is not an error) and the row. Nothing is read from a half-deleted upload, and no
//! blob is left without a row to find it by.
//!
//! Whether an unfinished import still reads the upload is decided under the row's lock
//! when it is marked ([`JobStore::mark_upload_deleted`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::id::TenantId;

/// Where an upload's bytes are: per tenant, by id, written once.
pub fn upload_path(tenant: &TenantId, id: Uuid) -> String {
    format!("uploads/{tenant}/{id}")
}

use crate::blob::{BlobError, BlobStore};
use crate::store::{JobStore, MarkOutcome, StoreError, Upload, UploadUse};

/// Where uploads' files are (`uploads/{tenant}/{id}`).
const UPLOADS_PREFIX: &str = "uploads/";
/// Uploads marked per transaction of a sweep.
const SWEEP_BATCH: u32 = 100;
/// A deletion marked this long ago and still not finished was cut short (the API deletes
/// the blob right after marking); the sweep finishes it.
const STALLED_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("upload store: {0}")]
    Store(#[from] StoreError),
    /// The upload is marked and hidden; its blob could not be deleted now. The sweep
    /// finishes the deletion later.
    #[error("deleting the upload's blob: {0}")]
    Blob(#[from] BlobError),
}

/// What [`delete_upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Record and blob are gone.
    Deleted(Upload),
    /// Nothing was deleted: something still needs the upload.
    InUse(UploadUse),
    /// No live upload of the tenant has this id.
    Missing,
}

/// Deletes `tenant`'s upload `id` unless something still needs it.
pub async fn delete_upload(
    store: &JobStore,
    blobs: &BlobStore,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Deleted, DeleteError> {
    match store.mark_upload_deleted(tenant, id).await? {
        MarkOutcome::Marked(upload) => {
            finish(store, blobs, &upload).await?;
            Ok(Deleted::Deleted(upload))
        }
        MarkOutcome::InUse(user) => Ok(Deleted::InUse(user)),
        MarkOutcome::Missing => Ok(Deleted::Missing),
    }
}

/// Deletes a marked upload's blob, then forgets its row.
async fn finish(store: &JobStore, blobs: &BlobStore, upload: &Upload) -> Result<(), DeleteError> {
    blobs.delete(&upload.path).await?;
    store.forget_upload(upload.id).await?;
    Ok(())
}

/// [`finish`], logging a failure (the upload stays marked for the next sweep).
async fn finished(store: &JobStore, blobs: &BlobStore, upload: &Upload) -> bool {
    match finish(store, blobs, upload).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(upload_id = %upload.id, error = %e, "deleting an upload failed; the next sweep tries again");
            false
        }
    }
}

/// What one [`sweep`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Uploads past retention deleted.
    pub expired: usize,
    /// Deletions a crash had cut short, finished.
    pub resumed: usize,
    /// Deletions whose blob could not be deleted this time (left marked, tried again).
    pub failed: usize,
    /// Files under `uploads/` past retention that no row knows, deleted.
    pub orphans: usize,
}

/// One pass at `now`: finishes deletions cut short, then — with a `retention` — deletes,
/// batch after batch, the uploads recorded more than `retention` before `now` that no
/// unfinished import reads and no schedule names, and the files under `uploads/` older than
/// that which no row knows. Safe to run in several enqueuers at once.
pub async fn sweep(
    store: &JobStore,
    blobs: &BlobStore,
    now: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for upload in store
        .unfinished_upload_deletions(now - STALLED_AFTER, SWEEP_BATCH)
        .await?
    {
        if finished(store, blobs, &upload).await {
            swept.resumed += 1;
        } else {
            swept.failed += 1;
        }
    }
    let Some(retention) = retention else {
        return Ok(swept);
    };
    let cutoff = now - retention;
    loop {
        let batch = store.mark_expired_uploads(cutoff, SWEEP_BATCH).await?;
        for upload in &batch.marked {
            if finished(store, blobs, upload).await {
                swept.expired += 1;
                tracing::info!(upload_id = %upload.id, tenant = %upload.tenant_id, "expired upload deleted");
            } else {
                swept.failed += 1;
            }
        }
        if batch.candidates < SWEEP_BATCH as usize {
            break;
        }
    }
    swept.orphans = remove_orphans(store, blobs, cutoff).await?;
    Ok(swept)
}

/// Deletes the files under `uploads/` last written before `cutoff` that no row knows: a
/// direct upload never completed, or a file whose process stopped between writing it and
/// recording it. Returns how many. A listing or deletion that fails is logged and left for
/// the next sweep.
///
/// A direct upload completed, past retention, while the sweep runs could lose its file
/// after its row was written; an import of it then fails saying the file is gone.
async fn remove_orphans(
    store: &JobStore,
    blobs: &BlobStore,
    cutoff: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let listed = match blobs.list_modified(UPLOADS_PREFIX).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "listing uploads failed; the next sweep tries again");
            return Ok(0);
        }
    };
    let old: Vec<(String, Uuid)> = listed
        .into_iter()
        .filter(|(_, modified)| *modified < cutoff)
        .filter_map(|(path, _)| {
            let id = path.rsplit('/').next()?.parse().ok()?;
            Some((path, id))
        })
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = old.iter().map(|(_, id)| *id).collect();
    let known = store.recorded_uploads(&ids).await?;
    let mut removed = 0;
    for (path, id) in old.iter().filter(|(_, id)| !known.contains(id)) {
        match blobs.delete(path).await {
            Ok(()) => {
                removed += 1;
                tracing::info!(upload_id = %id, %path, "unrecorded upload file deleted");
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "deleting an unrecorded upload file failed")
            }
        }
    }
    Ok(removed)
}
