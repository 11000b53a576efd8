//! The export job's processor (one key range → one part file) and finalizer (parts → one
//! result file).

use crate::assemble::{ExportResult, assemble, delete_parts};
use crate::part::{PartOutput, export_part};
use crate::{CHUNK, ExportSpec, FINALIZE, KeyRange};
use async_trait::async_trait;
use jobs_core::envelope::WorkItem;
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job};
use jobs_core::{JobKind, WorkKind};

use jobs_sdk::KindEnv;
use jobs_sdk::{Finalizer, Processor, item_outputs, job_params};

/// The export parameters stored with the job. A job whose parameters do not parse cannot
/// be processed by any retry.
pub(crate) fn spec_of(job: &Job) -> Result<ExportSpec, ProcessError> {
    job_params(job)
}

#[derive(Debug)]
pub(crate) struct ExportChunk;

#[async_trait]
impl Processor for ExportChunk {
    fn kind(&self) -> WorkKind {
        CHUNK
    }

    async fn process(
        &self,
        ctx: &KindEnv,
        job: &Job,
        item: &WorkItem,
    ) -> Result<serde_json::Value, ProcessError> {
        let spec = spec_of(job)?;
        let range: KeyRange = serde_json::from_value(item.payload.clone())
            .map_err(|e| ProcessError::fatal(format!("the item's key range is invalid: {e}")))?;
        let ds = ctx.catalog.get(&spec.dataset).await.map_err(|e| match e {
            jobs_core::dataset::CatalogError::Db(e) => ProcessError::retryable(e.to_string()),
            other => ProcessError::fatal(other.to_string()),
        })?;
        let out = export_part(
            &ctx.pool.clone(),
            &ctx.blobs,
            &ds,
            &spec,
            job.id,
            item.seq,
            &range,
        )
        .await
        .map_err(|e| {
            if e.is_retryable() {
                ProcessError::retryable(e.to_string())
            } else {
                ProcessError::fatal(e.to_string())
            }
        })?;
        tracing::debug!(rows = out.rows, bytes = out.bytes, "part exported");
        serde_json::to_value(out).map_err(|e| ProcessError::fatal(e.to_string()))
    }
}

#[derive(Debug)]
pub(crate) struct ExportFinalizer;

fn parts(items: &[ItemRecord]) -> Result<Vec<PartOutput>, ProcessError> {
    item_outputs(items)
}

#[async_trait]
impl Finalizer for ExportFinalizer {
    fn job_kind(&self) -> JobKind {
        crate::KIND
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    async fn finalize(
        &self,
        ctx: &KindEnv,
        job: &Job,
        items: &[ItemRecord],
    ) -> Result<serde_json::Value, ProcessError> {
        let spec = spec_of(job)?;
        let parts = parts(items)?;
        let result: ExportResult = assemble(&ctx.blobs, job.id, spec.format, &parts)
            .await
            .map_err(|e| ProcessError::retryable(e.to_string()))?;
        tracing::info!(rows = result.rows, bytes = result.bytes, "export assembled");
        serde_json::to_value(result).map_err(|e| ProcessError::fatal(e.to_string()))
    }

    async fn cleanup(&self, ctx: &KindEnv, _job: &Job, items: &[ItemRecord]) {
        if let Ok(parts) = parts(items) {
            delete_parts(&ctx.blobs, &parts).await;
        }
    }
}
