//! The import job's processor (one byte range of the upload → rows upserted, rejects
//! reported) and finalizer (counts summed, one rejects report; too many rejected rows fail
//! the job, keeping the result).

use crate::finish::{ImportResult, delete_parts, finish};
use crate::load::{ItemOutput, LoadItem, load_range};
use crate::{ByteRange, CHUNK, FINALIZE, ImportSpec, target, upload_path};
use async_trait::async_trait;
use jobs_core::dataset::CatalogError;
use jobs_core::envelope::WorkItem;
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job};
use jobs_core::{JobKind, WorkKind};

use jobs_sdk::KindEnv;
use jobs_sdk::{Finalizer, Processor, item_outputs, job_params};

/// The import parameters stored with the job.
fn spec_of(job: &Job) -> Result<ImportSpec, ProcessError> {
    job_params(job)
}

#[derive(Debug)]
pub(crate) struct ImportChunk;

#[async_trait]
impl Processor for ImportChunk {
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
        let range: ByteRange = serde_json::from_value(item.payload.clone())
            .map_err(|e| ProcessError::fatal(format!("the item's byte range is invalid: {e}")))?;
        let ds = ctx.catalog.get(&spec.dataset).await.map_err(|e| match e {
            CatalogError::Db(e) => ProcessError::retryable(e.to_string()),
            other => ProcessError::fatal(other.to_string()),
        })?;
        let pool = &ctx.pool;
        let table = target::inspect(pool, &ds)
            .await
            .map_err(|e| ProcessError::retryable(format!("reading the table's columns: {e}")))?;
        let path = upload_path(&job.tenant_id, spec.upload_id);
        let load = LoadItem {
            pool,
            blobs: &ctx.blobs,
            ds: &ds,
            table: &table,
            spec: &spec,
            upload_path: &path,
            job_id: job.id,
            seq: item.seq,
        };
        let out = load_range(&load, &range).await.map_err(|e| {
            if e.is_retryable() {
                ProcessError::retryable(e.to_string())
            } else {
                ProcessError::fatal(e.to_string())
            }
        })?;
        tracing::debug!(
            rows = out.rows,
            inserted = out.inserted,
            updated = out.updated,
            rejected = out.rejected,
            "range imported"
        );
        serde_json::to_value(out).map_err(|e| ProcessError::fatal(e.to_string()))
    }
}

#[derive(Debug)]
pub(crate) struct ImportFinalizer;

fn outputs(items: &[ItemRecord]) -> Result<Vec<ItemOutput>, ProcessError> {
    item_outputs(items)
}

#[async_trait]
impl Finalizer for ImportFinalizer {
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
        let outputs = outputs(items)?;
        let result: ImportResult = finish(&ctx.blobs, job.id, &spec, &outputs)
            .await
            .map_err(|e| ProcessError::retryable(e.to_string()))?;
        tracing::info!(
            rows = result.rows,
            inserted = result.inserted,
            updated = result.updated,
            rejected = result.rejected,
            "import finished"
        );
        let doc = serde_json::to_value(&result).map_err(|e| ProcessError::fatal(e.to_string()))?;
        if result.too_many_rejected() {
            let loaded = if spec.dry_run {
                "nothing was loaded (dry run)"
            } else {
                "the rows that passed are loaded"
            };
            return Err(ProcessError::JobFailed {
                reason: format!(
                    "{} rows were rejected, more than max_rejected ({}); {loaded}; see the \
                     rejects report",
                    result.rejected, result.max_rejected
                ),
                result: doc,
            });
        }
        Ok(doc)
    }

    async fn cleanup(&self, ctx: &KindEnv, _job: &Job, items: &[ItemRecord]) {
        if let Ok(outputs) = outputs(items) {
            delete_parts(&ctx.blobs, &outputs).await;
        }
    }
}
