//! The ingest job's processor (one partition → its NDJSON pages) and finalizer (the
//! partitions' outputs → a manifest, the job's result file).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::client::SourceClient;
use crate::fetch::{PartitionFetch, ingest_partition};
use crate::governor::Governor;
use crate::job::spec_of;
use crate::{Bounds, FINALIZE, PARTITION, PartitionOutput, manifest_path, put_object};
use async_trait::async_trait;
use jobs_core::envelope::WorkItem;
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job};
use jobs_core::{JobKind, WorkKind};
use serde_json::json;

use jobs_sdk::KindEnv;
use jobs_sdk::{Finalizer, Processor, item_outputs};

/// Fetches one partition. Holds what outlives an item: an HTTP client per source (its
/// connection pool) and this process's side of the sources' concurrency limits.
#[derive(Debug, Default)]
pub(crate) struct IngestPartition {
    /// An async lock: the first item of a source builds its client (tens of milliseconds:
    /// the TLS roots are loaded) while the others wait without holding a runtime thread.
    clients: tokio::sync::Mutex<HashMap<String, Arc<SourceClient>>>,
    governor: OnceLock<Governor>,
}

impl IngestPartition {
    async fn client(&self, ctx: &KindEnv, name: &str) -> Result<Arc<SourceClient>, ProcessError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        let cfg = ctx.cfg.sources.get(name).cloned().ok_or_else(|| {
            ProcessError::fatal(format!("source `{name}` is no longer configured"))
        })?;
        let owned = name.to_owned();
        let client = tokio::task::spawn_blocking(move || SourceClient::new(&owned, &cfg))
            .await
            .map_err(|e| ProcessError::retryable(format!("building the HTTP client: {e}")))?
            .map_err(ProcessError::retryable)?;
        let client = Arc::new(client);
        clients.insert(name.to_owned(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl Processor for IngestPartition {
    fn kind(&self) -> WorkKind {
        PARTITION
    }

    async fn process(
        &self,
        ctx: &KindEnv,
        job: &Job,
        item: &WorkItem,
    ) -> Result<serde_json::Value, ProcessError> {
        let spec = spec_of(job).map_err(ProcessError::fatal)?;
        let bounds: Bounds = serde_json::from_value(item.payload.clone())
            .map_err(|e| ProcessError::fatal(format!("the item's partition is invalid: {e}")))?;
        let client = self.client(ctx, &spec.source).await?;
        let governor = self
            .governor
            .get_or_init(|| Governor::new(ctx.pool.clone()));
        let gate = governor
            .gate(
                &spec.source,
                client.cfg.max_concurrency,
                client.cfg.permit_lease(),
            )
            .await
            .map_err(|e| ProcessError::retryable(format!("the source limit: {e}")))?;
        let fetch = PartitionFetch {
            client: &client,
            gate: &gate,
            blobs: &ctx.blobs,
            job_id: job.id,
        };
        let out = ingest_partition(fetch, &bounds).await?;
        tracing::debug!(
            pages = out.pages,
            records = out.records,
            "partition ingested"
        );
        serde_json::to_value(out).map_err(|e| ProcessError::fatal(e.to_string()))
    }
}

/// Writes the manifest.
#[derive(Debug)]
pub(crate) struct IngestFinalizer;

fn outputs(items: &[ItemRecord]) -> Result<Vec<(u32, PartitionOutput)>, ProcessError> {
    let outputs: Vec<PartitionOutput> = item_outputs(items)?;
    Ok(items.iter().map(|i| i.item.seq).zip(outputs).collect())
}

#[async_trait]
impl Finalizer for IngestFinalizer {
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
        let spec = spec_of(job).map_err(ProcessError::fatal)?;
        let parts = outputs(items)?;
        let pages: u64 = parts.iter().map(|(_, p)| u64::from(p.pages)).sum();
        let records: u64 = parts.iter().map(|(_, p)| p.records).sum();
        let bytes: u64 = parts.iter().map(|(_, p)| p.bytes).sum();
        let requests: u64 = parts.iter().map(|(_, p)| u64::from(p.requests)).sum();
        let partitions: Vec<serde_json::Value> = parts
            .iter()
            .map(|(seq, p)| {
                json!({
                    "seq": seq, "bounds": p.bounds, "prefix": p.prefix,
                    "pages": p.pages, "records": p.records, "bytes": p.bytes,
                })
            })
            .collect();
        let manifest = json!({
            "job_id": job.id, "source": spec.source, "format": "ndjson",
            "pages": pages, "records": records, "bytes": bytes,
            "partitions": partitions,
        });
        let path = manifest_path(&spec.source, job.id);
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| ProcessError::fatal(e.to_string()))?;
        put_object(&ctx.blobs, &path, body)
            .await
            .map_err(ProcessError::retryable)?;
        tracing::info!(pages, records, "ingest manifest written");
        Ok(json!({
            "path": path, "source": spec.source, "partitions": parts.len(),
            "pages": pages, "records": records, "data_bytes": bytes, "requests": requests,
        }))
    }
}
