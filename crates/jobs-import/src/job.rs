//! The import job type: validation in the API (the request, the dataset and its table, the
//! upload and — for CSV — its header) and planning in the enqueuer (the upload cut into
//! byte ranges, streamed once).

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;

use super::spec::{ImportRequest, check_columns, dataset_columns, header_columns};
use super::split::Splitter;
use super::{CHUNK, FINALIZE, ImportFormat, ImportSpec, target, upload_path};
use jobs_core::blob::BlobStore;
use jobs_core::dataset::CatalogError;
use jobs_core::id::TenantId;
use jobs_core::kind::{JobKind, WorkKind};
use jobs_core::store::{Job, JobStore, PlannedItem};
use jobs_sdk::jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};

/// Longest CSV header accepted.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// Why an upload written again after it was recorded is refused.
pub const CHANGED: &str = "the upload's file was written again after it was recorded (through \
     its upload URL?); upload it anew";

#[derive(Debug, Clone, Copy)]
pub struct ImportJob;

/// The column names in the header of the CSV file at `path`.
async fn read_header(
    blobs: &BlobStore,
    path: &str,
    etag: Option<&str>,
) -> Result<Vec<String>, ParamsError> {
    let field = "import.upload_id";
    let blob_error = |e: jobs_core::blob::BlobError| {
        if e.is_not_found() {
            ParamsError::invalid(field, "the upload's file is gone")
        } else if e.is_changed() {
            ParamsError::invalid(field, CHANGED)
        } else {
            ParamsError::Unavailable(e.to_string())
        }
    };
    let size = blobs.size(path).await.map_err(blob_error)?;
    if size == 0 {
        return Err(ParamsError::invalid(
            field,
            "the upload is empty; a CSV import needs a header line naming the columns",
        ));
    }
    let head = blobs
        .read_range_if(path, 0..size.min(MAX_HEADER_BYTES), etag)
        .await
        .map_err(blob_error)?;
    let end = match super::csv::first_record_end(&head) {
        Some(end) => end,
        None if size <= MAX_HEADER_BYTES => head.len(),
        None => {
            return Err(ParamsError::invalid(
                field,
                "the file's first line (its header) is longer than 1 MiB",
            ));
        }
    };
    let mut record = &head[..end];
    if let Some(r) = record.strip_suffix(b"\n") {
        record = r.strip_suffix(b"\r").unwrap_or(r);
    }
    header_columns(record)
        .map_err(|why| ParamsError::invalid(field, format!("the file's header: {why}")))
}

#[async_trait]
impl JobType for ImportJob {
    fn kind(&self) -> JobKind {
        crate::KIND
    }

    fn reports_rejects(&self) -> bool {
        true
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    fn request_schema(&self) -> Value {
        crate::spec::request_schema()
    }

    async fn validate(
        &self,
        tenant: &TenantId,
        params: &Value,
        env: &KindEnv,
    ) -> Result<Value, ParamsError> {
        let req = ImportRequest::parse(params)?;
        let ds = env.catalog.get(&req.dataset).await.map_err(|e| match e {
            CatalogError::Unknown(n) => {
                let known: Vec<&str> = env.catalog.names().collect();
                ParamsError::invalid(
                    "import.dataset",
                    format!("unknown dataset `{n}` (known: {})", known.join(", ")),
                )
            }
            CatalogError::Unavailable { problem, .. } => {
                ParamsError::invalid("import.dataset", problem)
            }
            CatalogError::Db(e) => ParamsError::Db(e),
        })?;
        let table = target::inspect(&env.pool, &ds).await?;
        if let Some(why) = table.unfit(&ds) {
            return Err(ParamsError::invalid("import.dataset", why));
        }
        let upload = JobStore::new(env.pool.clone())
            .upload(tenant, req.upload_id)
            .await
            .map_err(|e| ParamsError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                ParamsError::invalid(
                    "import.upload_id",
                    format!(
                        "no upload {} (an upload can be imported only by the tenant that sent it)",
                        req.upload_id
                    ),
                )
            })?;
        let columns = match req.format {
            ImportFormat::Csv => {
                let header = read_header(&env.blobs, &upload.path, upload.etag.as_deref()).await?;
                check_columns(&header, &ds, &table, "import.upload_id")?;
                header
            }
            ImportFormat::Ndjson => {
                let columns = dataset_columns(&ds);
                check_columns(&columns, &ds, &table, "import.dataset")?;
                columns
            }
        };
        let spec = ImportSpec {
            dataset: ds.name.clone(),
            upload_id: req.upload_id,
            format: req.format,
            dry_run: req.dry_run,
            max_rejected: req.max_rejected,
            columns,
            upload_etag: upload.etag.clone(),
        };
        serde_json::to_value(&spec).map_err(|e| ParamsError::Unavailable(e.to_string()))
    }

    async fn plan(&self, job: &Job, env: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
        let spec: ImportSpec = serde_json::from_value(JobTypes::params_of(job)?.clone())
            .map_err(|e| PlanError::Fatal(format!("invalid import parameters: {e}")))?;
        // Deleting an upload hides its record before its blob goes, and an import created
        // before that cannot be missed by the deletion (see `jobs_core::uploads`): a record
        // still here means the file stays as long as this job is unfinished.
        let live = JobStore::new(env.pool.clone())
            .upload(&job.tenant_id, spec.upload_id)
            .await
            .map_err(|e| PlanError::Retryable(format!("looking up the upload failed: {e}")))?;
        if live.is_none() {
            return Err(PlanError::Fatal(format!(
                "the upload {} was deleted",
                spec.upload_id
            )));
        }
        let path = upload_path(&job.tenant_id, spec.upload_id);
        let blob_error = |e: jobs_core::blob::BlobError| {
            if e.is_not_found() {
                PlanError::Fatal(format!("the upload {} is gone", spec.upload_id))
            } else if e.is_changed() {
                PlanError::Fatal(CHANGED.into())
            } else {
                PlanError::Retryable(format!("reading the upload failed: {e}"))
            }
        };
        let mut stream = env
            .blobs
            .read_if(&path, spec.upload_etag.as_deref())
            .await
            .map_err(blob_error)?;
        let mut splitter =
            Splitter::new(spec.format == ImportFormat::Csv, env.cfg.import.chunk_bytes);
        while let Some(chunk) = stream.next().await {
            splitter
                .feed(&chunk.map_err(blob_error)?)
                .map_err(|e| PlanError::Fatal(format!("the file cannot be split: {e}")))?;
        }
        splitter
            .finish()
            .into_iter()
            .enumerate()
            .map(|(seq, range)| {
                Ok(PlannedItem {
                    seq: u32::try_from(seq)
                        .map_err(|_| PlanError::Fatal("the file makes too many items".into()))?,
                    kind: CHUNK,
                    payload: serde_json::to_value(range)
                        .map_err(|e| PlanError::Fatal(e.to_string()))?,
                })
            })
            .collect()
    }
}
