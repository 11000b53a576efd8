//! Upload retention: every `uploads.sweep_interval_secs`, each enqueuer deletes the uploads
//! recorded more than `uploads.retention_hours` ago that no unfinished import reads and no
//! schedule names, and finishes deletions a crash or an unavailable blob store cut short
//! ([`jobs_core::uploads::sweep`], which says why the record is hidden before the blob
//! goes) — the latter even with retention off (`retention_hours = 0`), since uploads can
//! still be deleted by hand. Several enqueuers may sweep at once: each upload is claimed
//! `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;

use chrono::Utc;
use jobs_core::uploads::{Swept, sweep};
use tokio_util::sync::CancellationToken;

use crate::{EnqueuerContext, EnqueuerError};

/// One sweep at the current time.
pub async fn sweep_expired(ctx: &EnqueuerContext) -> Result<Swept, EnqueuerError> {
    let retention = ctx.env.cfg.uploads.retention();
    Ok(sweep(&ctx.store, &ctx.env.blobs, Utc::now(), retention).await?)
}

/// Sweeps every `uploads.sweep_interval_secs` until `shutdown` (at once when started, so a
/// restart does not wait an interval).
pub async fn sweep_until_stopped(ctx: Arc<EnqueuerContext>, shutdown: CancellationToken) {
    let interval = ctx.env.cfg.uploads.sweep_interval();
    loop {
        match sweep_expired(&ctx).await {
            Ok(s) if s != Swept::default() => {
                tracing::info!(
                    expired = s.expired,
                    resumed = s.resumed,
                    failed = s.failed,
                    "uploads swept"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping expired uploads failed; trying again"),
        }
        match ctx
            .env
            .blobs
            .remove_abandoned_staging(jobs_core::blob::STAGING_MAX_AGE)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "abandoned staging files removed"),
            Err(e) => tracing::warn!(error = %e, "removing abandoned staging files failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
