//! The job document: how a job looks to its owner, in API responses and webhook payloads
//! alike.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::Job;
use crate::{JobId, JobStatus};

/// A job as its owner sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDocument {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: JobId,
    /// The job's kind (`export`, `import`, `ingest`, or a kind a deployment added).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "export"))]
    pub kind: crate::JobKind,
    pub status: JobStatus,
    pub progress: JobProgress,
    pub created_at: DateTime<Utc>,
    /// `null` until the job is planned.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub started_at: Option<DateTime<Utc>>,
    /// `null` until the job has finished.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_at: Option<DateTime<Utc>>,
    /// What the job made, as its kind describes it (present once it has finished with a
    /// result). A file is a link: `download_url` (and `rejects_url` for the rows an import
    /// refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub result: Option<Value>,
    /// Why the job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub error: Option<String>,
}

/// Work items by outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobProgress {
    /// Items planned; `null` until the job has been planned.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub total: Option<u32>,
    pub done: u32,
    pub failed: u32,
    /// Items not processed because the job was cancelled.
    pub skipped: u32,
}

impl JobDocument {
    /// The document of `job`. `base_url` is where the API is reached (for download links).
    pub fn new(job: &Job, base_url: &str) -> Self {
        Self {
            id: job.id,
            kind: job.kind.clone(),
            status: job.status,
            progress: JobProgress {
                total: job.progress.total,
                done: job.progress.done,
                failed: job.progress.failed,
                skipped: job.progress.skipped,
            },
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            result: job
                .result
                .as_ref()
                .map(|r| public_result(job.id, r, base_url)),
            error: job.error.clone(),
        }
    }
}

/// The finalizer's result, as its kind wrote it, except where a file lives in the blob
/// store (`path`, `rejects_path`: internal): a download link stands in for it.
fn public_result(id: JobId, stored: &Value, base_url: &str) -> Value {
    let mut result = stored.clone();
    let base = base_url.trim_end_matches('/');
    if let Some(obj) = result.as_object_mut() {
        if obj.remove("path").is_some() {
            obj.insert(
                "download_url".into(),
                json!(format!("{base}/v1/jobs/{id}/result")),
            );
        }
        // An import's rejects report.
        if obj.remove("rejects_path").is_some() {
            obj.insert(
                "rejects_url".into(),
                json!(format!("{base}/v1/jobs/{id}/rejects")),
            );
        }
    }
    result
}

/// The job document as JSON (for webhook payloads and events).
pub fn job_document(job: &Job, base_url: &str) -> Value {
    serde_json::to_value(JobDocument::new(job, base_url)).unwrap_or(Value::Null)
}
