//! The job document: how a job looks to its owner, in API responses and webhook payloads
//! alike.

use serde_json::{Value, json};

use crate::store::Job;

/// The job as JSON. `base_url` is where the API is reached (for the download link).
pub fn job_document(job: &Job, base_url: &str) -> Value {
    let mut doc = json!({
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": {
            "total": job.progress.total,
            "done": job.progress.done,
            "failed": job.progress.failed,
            "skipped": job.progress.skipped,
        },
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    });
    if let Some(r) = &job.result {
        doc["result"] = json!({
            "rows": r.get("rows"),
            "bytes": r.get("bytes"),
            "sha256": r.get("sha256"),
            "format": r.get("format"),
            "download_url": format!("{}/v1/jobs/{}/result", base_url.trim_end_matches('/'), job.id),
        });
    }
    if let Some(e) = &job.error {
        doc["error"] = json!(e);
    }
    doc
}
