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
    // The finalizer's result, as its kind wrote it, except where a file lives in the blob
    // store (`path`, `rejects_path`: internal): a download link stands in for it.
    if let Some(r) = &job.result {
        let mut result = r.clone();
        let base = base_url.trim_end_matches('/');
        if let Some(obj) = result.as_object_mut() {
            if obj.remove("path").is_some() {
                obj.insert(
                    "download_url".into(),
                    json!(format!("{base}/v1/jobs/{}/result", job.id)),
                );
            }
            // An import's rejects report.
            if obj.remove("rejects_path").is_some() {
                obj.insert(
                    "rejects_url".into(),
                    json!(format!("{base}/v1/jobs/{}/rejects", job.id)),
                );
            }
        }
        doc["result"] = result;
    }
    if let Some(e) = &job.error {
        doc["error"] = json!(e);
    }
    doc
}
