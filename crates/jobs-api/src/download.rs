//! Results: `GET /v1/jobs/{id}/result` (and an import's `GET /v1/jobs/{id}/rejects`)
//! answers with a short-lived signed link (a redirect) when the file exists — else with
//! why not, in the JSON error format (a failed job's own error, and what to do) — and
//! `GET /v1/downloads/{id}?expires=…&signature=…[&file=rejects]` serves the file to whoever
//! holds an unexpired link — no API key needed, so a browser can follow it.
//!
//! The signature is HMAC-SHA256 over `{job_id}.{expires}` (`{job_id}/rejects.{expires}` for
//! a rejects report) with the download signing key; changing any part of the link, or
//! using it after `expires`, gets 403.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use jobs_core::store::{Job, StoreError};
use jobs_core::{JobId, JobStatus};
use serde::Deserialize;
use sha2::Sha256;

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::{DownloadLink, ErrorBody, LinkQuery};
use crate::error::ApiError;
use crate::extract::Path;
use crate::jobs::tenant_job;

/// The file of a job's result: any kind's result with a `path`, typed by its extension.
#[derive(Debug, Deserialize)]
struct ResultFile {
    path: String,
}

impl ResultFile {
    fn extension(&self) -> &str {
        self.path
            .rsplit_once('.')
            .map(|(_, ext)| ext)
            .filter(|ext| !ext.contains('/'))
            .unwrap_or("bin")
    }

    fn content_type(&self) -> &'static str {
        match self.extension() {
            "csv" => "text/csv; charset=utf-8",
            "json" => "application/json",
            "ndjson" => "application/x-ndjson",
            _ => "application/octet-stream",
        }
    }
}

/// Signs and checks download links.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    /// A signer with the configured key, or a random one (links then die with the process).
    pub fn new(configured: &str) -> Self {
        if configured.is_empty() {
            let mut key = vec![0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            Self { key }
        } else {
            Self {
                key: configured.as_bytes().to_vec(),
            }
        }
    }

    fn mac(&self, job_id: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(job_id.as_bytes());
        mac.update(b".");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    pub fn sign(&self, job_id: &str, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(job_id, expires).finalize().into_bytes())
    }

    /// Constant-time check of a link's signature.
    pub fn verify(&self, job_id: &str, expires: i64, signature: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.mac(job_id, expires).verify_slice(&sig).is_ok()
    }
}

/// A job's result file.
///
/// A redirect to a short-lived signed link, with the link in the body too. Only a job that
/// succeeded with a file has one: any other answers with what became of the job (its
/// error, for a failed one) and what to do, never a link to a missing file.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    operation_id = "getJobResult",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 302, description = "The link", body = DownloadLink, headers(("Location" = String, description = "The link"))),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job, or its kind's result is not a file (`no_result_file`)", body = ErrorBody),
        (status = 409, description = "`not_ready`, `job_failed` (with the error and what to do) or `job_cancelled`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn result(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    let job = tenant_job(&state, &tenant, id).await?;
    if job.status != JobStatus::Succeeded {
        return Err(no_file_yet(&job, "result", "succeeded"));
    }
    let stored: Option<ResultFile> = job
        .result
        .clone()
        .and_then(|r| serde_json::from_value(r).ok());
    let Some(stored) = stored else {
        let rejects = if has_rejects(&job) {
            format!("; the rows it rejected are in GET /v1/jobs/{id}/rejects")
        } else {
            String::new()
        };
        return Err(ApiError::Absent {
            code: "no_result_file",
            message: format!(
                "a{n} {kind} job's result is not a file: it is the `result` of the job \
                 document (GET /v1/jobs/{id}){rejects}",
                n = if job.kind.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "n"
                } else {
                    ""
                },
                kind = job.kind,
            ),
        });
    };
    Ok(link(&state, &headers, id, None, &stored.path).await)
}

/// A job's rejects report.
///
/// The input rows a job refused, with why (`line,column,value,reason`), for kinds that
/// reject rows ([`jobs_sdk::JobType::reports_rejects`]; an import), as a redirect to a
/// signed link. Available once the job has finished, failed or not, when a row was
/// rejected; a job that failed before any report was made answers with its error.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/rejects",
    operation_id = "getJobRejects",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 302, description = "The link", body = DownloadLink, headers(("Location" = String, description = "The link"))),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job, or it has no report (`no_rejects_report`)", body = ErrorBody),
        (status = 409, description = "`not_ready`, `job_failed` or `job_cancelled`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn rejects(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    let job = tenant_job(&state, &tenant, id).await?;
    let path = job
        .result
        .as_ref()
        .and_then(|r| r.get("rejects_path"))
        .and_then(|p| p.as_str())
        .map(str::to_owned);
    if let Some(path) = path {
        return Ok(link(&state, &headers, id, Some(REJECTS), &path).await);
    }
    let reports = state
        .job_types
        .get(&job.kind)
        .is_some_and(|t| t.reports_rejects());
    if !reports {
        return Err(ApiError::Absent {
            code: "no_rejects_report",
            message: format!(
                "a {} job has no rejects report: only kinds that reject input rows make one",
                job.kind
            ),
        });
    }
    Err(match job.status {
        JobStatus::Succeeded => ApiError::Absent {
            code: "no_rejects_report",
            message: format!(
                "the {} rejected no rows: it has no rejects report",
                job.kind
            ),
        },
        _ => no_file_yet(&job, "rejects report", "finished"),
    })
}

/// The job's result names a rejects report.
fn has_rejects(job: &Job) -> bool {
    job.result
        .as_ref()
        .is_some_and(|r| r.get("rejects_path").is_some_and(|p| p.is_string()))
}

/// Why a job that has not succeeded has no `file` (`409`): it failed (with its error and
/// what to do), it was cancelled, or it has not reached `when` yet.
fn no_file_yet(job: &Job, file: &str, when: &str) -> ApiError {
    match job.status {
        JobStatus::Failed => {
            let error = job.error.as_deref().unwrap_or("no reason was recorded");
            let failed = job.progress.failed;
            let todo = if failed > 0 {
                format!(
                    "Send its {failed} failed item{s} again with POST /v1/jobs/{id}/retry-failed: \
                     the job then runs to its end again",
                    s = if failed == 1 { "" } else { "s" },
                    id = job.id,
                )
            } else if has_rejects(job) {
                format!(
                    "The rows it rejected are in GET /v1/jobs/{}/rejects: correct them and \
                     submit the job again, or allow more with `max_rejected`",
                    job.id
                )
            } else {
                "Correct the cause and submit the job again".to_owned()
            };
            ApiError::Conflict {
                code: "job_failed",
                message: format!("the job failed, so it has no {file}: {error}. {todo}."),
            }
        }
        JobStatus::Cancelled => ApiError::Conflict {
            code: "job_cancelled",
            message: format!(
                "the job was cancelled, so it has no {file}; submit it again to get one"
            ),
        },
        status => ApiError::Conflict {
            code: "not_ready",
            message: format!("the job is {status}; its {file} exists once it has {when}"),
        },
    }
}

/// A link holder's answer when the file cannot be read: the blob store's own error (which
/// names paths, containers and accounts) goes to the log, not to whoever holds the link.
fn gone(id: JobId, e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(job_id = %id, error = %e, "a linked file could not be read");
    ApiError::Gone {
        message: "the file is gone: it was deleted or has expired".into(),
    }
}

/// The `file` of a download link to an import's rejects report.
const REJECTS: &str = "rejects";

/// A redirect to a short-lived link to a job's file: the blob store's own signed URL where
/// it can make one (Azure: a SAS URL, so the file does not pass through the API), else the
/// API's link signed over `{job id}[/{file}].{expires}`.
async fn link(
    state: &AppState,
    headers: &HeaderMap,
    id: JobId,
    file: Option<&str>,
    path: &str,
) -> Response {
    let expires = chrono::Utc::now().timestamp() + state.cfg.download.link_ttl_secs as i64;
    let direct = if state.cfg.download.direct_links {
        match state
            .blobs
            .signed_url(path, state.cfg.download.link_ttl())
            .await
        {
            Ok(url) => url,
            Err(e) => {
                // Signing can fail (an identity without delegation rights): the API's
                // own link still works.
                tracing::warn!(error = %e, "the blob store could not sign a link; using the API's");
                None
            }
        }
    } else {
        None
    };
    let url = match direct {
        Some(u) => u,
        None => {
            let subject = match file {
                Some(f) => format!("{id}/{f}"),
                None => id.to_string(),
            };
            let file_param = file.map(|f| format!("&file={f}")).unwrap_or_default();
            format!(
                "{}/v1/downloads/{id}?expires={expires}&signature={}{file_param}",
                state.base_url(headers).trim_end_matches('/'),
                state.signer.sign(&subject, expires)
            )
        }
    };
    let expires_at = chrono::DateTime::from_timestamp(expires, 0);
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, url.clone()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(DownloadLink {
            download_url: url,
            expires_at,
        }),
    )
        .into_response()
}

/// Download a job's file, for holders of a signed link.
///
/// The link is what `GET /v1/jobs/{id}/result` (or `…/rejects`) redirects to; it needs no
/// API key and expires.
#[utoipa::path(
    get,
    path = "/v1/downloads/{id}",
    operation_id = "download",
    tag = "downloads",
    params(("id" = Uuid, Path, description = "The job"), LinkQuery),
    responses(
        (status = 400, description = "The query string cannot be read: a parameter given twice, or a number out of range", body = ErrorBody),
        (status = 200, description = "The file, typed by its extension",
            content((String = "text/csv"), (String = "application/x-ndjson"), (String = "application/json"), (Vec<u8> = "application/octet-stream")),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"{job id}.{csv|ndjson}\"`"))),
        (status = 403, description = "The link is invalid or has expired", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 410, description = "The file is gone (deleted, or the job has no such file)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<JobId>,
    Query(q): Query<LinkQuery>,
) -> Result<Response, ApiError> {
    let forbidden = ApiError::Forbidden("the link is invalid or has expired");
    let (Some(expires), Some(sig)) = (q.expires, q.signature) else {
        return Err(forbidden);
    };
    let subject = match q.file.as_deref() {
        None => id.to_string(),
        Some(REJECTS) => format!("{id}/{REJECTS}"),
        Some(_) => return Err(forbidden),
    };
    if expires < chrono::Utc::now().timestamp() || !state.signer.verify(&subject, expires, &sig) {
        return Err(forbidden);
    }
    let job = match state.store.get_any(id).await {
        Ok(job) => job,
        Err(StoreError::UnknownJob(_)) => return Err(ApiError::NotFound("job")),
        Err(e) => return Err(e.into()),
    };
    let no_file = || ApiError::Gone {
        message: "the job has no such file".into(),
    };
    let (path, bytes, content_type, filename) = if q.file.is_some() {
        let result = job.result.as_ref().ok_or_else(no_file)?;
        let path = result["rejects_path"].as_str().ok_or_else(no_file)?;
        let bytes = result["rejects_bytes"].as_u64().ok_or_else(no_file)?;
        (
            path.to_owned(),
            bytes,
            "text/csv; charset=utf-8".to_owned(),
            format!("{}-rejects.csv", job.id),
        )
    } else {
        let result: ResultFile = job
            .result
            .and_then(|r| serde_json::from_value(r).ok())
            .ok_or_else(no_file)?;
        let bytes = state
            .blobs
            .size(&result.path)
            .await
            .map_err(|e| gone(id, &e))?;
        let (content_type, filename) = (
            result.content_type().to_owned(),
            format!("{}.{}", job.id, result.extension()),
        );
        (result.path, bytes, content_type, filename)
    };
    let stream = state.blobs.read(&path).await.map_err(|e| gone(id, &e))?;
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_unaltered() {
        let s = LinkSigner::new("0123456789abcdef0123456789abcdef");
        let sig = s.sign("job-1", 1000);
        assert!(s.verify("job-1", 1000, &sig));
        assert!(!s.verify("job-1", 1001, &sig));
        assert!(!s.verify("job-2", 1000, &sig));
        assert!(!s.verify("job-1", 1000, "AAAA"));
        assert!(
            !LinkSigner::new("").verify("job-1", 1000, &sig),
            "a random key signs differently"
        );
    }
}
