//! Results: `GET /v1/jobs/{id}/result` answers with a short-lived signed link (a redirect),
//! and `GET /v1/downloads/{id}?expires=…&signature=…` serves the file to whoever holds an
//! unexpired link — no API key needed, so a browser can follow it.
//!
//! The signature is HMAC-SHA256 over `{job_id}.{expires}` with the download signing key;
//! changing any part of the link, or using it after `expires`, gets 403.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use jobs_core::JobStatus;
use jobs_core::export::assemble::ExportResult;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;

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

/// `GET /v1/jobs/{id}/result`: a redirect to a signed link, with the link in the body too.
pub async fn result(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = id.parse().map_err(|_| ApiError::NotFound)?;
    let job = state
        .store
        .get(&tenant.0, job_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if job.status != JobStatus::Succeeded {
        return Err(ApiError::Conflict {
            code: "not_ready",
            message: format!(
                "the job is {}; its result exists once it has succeeded",
                job.status
            ),
        });
    }
    let expires = chrono::Utc::now().timestamp() + state.cfg.download.link_ttl_secs as i64;
    // A store that signs its own URLs (Azure: a SAS URL) serves the file itself; otherwise
    // the API streams it behind its own signed link.
    let stored: Option<ExportResult> = job
        .result
        .clone()
        .and_then(|r| serde_json::from_value(r).ok());
    let direct = match &stored {
        Some(r) if state.cfg.download.direct_links => {
            match state
                .blobs
                .signed_url(&r.path, state.cfg.download.link_ttl())
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
        }
        _ => None,
    };
    let url = match direct {
        Some(u) => u,
        None => format!(
            "{}/v1/downloads/{id}?expires={expires}&signature={}",
            state.base_url(&headers).trim_end_matches('/'),
            state.signer.sign(&id, expires)
        ),
    };
    let expires_at = chrono::DateTime::from_timestamp(expires, 0);
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url.clone()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(json!({ "download_url": url, "expires_at": expires_at })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

/// `GET /v1/downloads/{id}?expires=…&signature=…`: streams the result file.
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Result<Response, ApiError> {
    let forbidden = || {
        (StatusCode::FORBIDDEN, Json(json!({"error": {"code": "forbidden", "message": "the link is invalid or has expired"}})))
            .into_response()
    };
    let (Some(expires), Some(sig)) = (q.expires, q.signature) else {
        return Ok(forbidden());
    };
    if expires < chrono::Utc::now().timestamp() || !state.signer.verify(&id, expires, &sig) {
        return Ok(forbidden());
    }
    let job = state
        .store
        .get_any(id.parse().map_err(|_| ApiError::NotFound)?)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let result: ExportResult = job
        .result
        .and_then(|r| serde_json::from_value(r).ok())
        .ok_or_else(|| ApiError::Gone {
            message: "the job has no result file".into(),
        })?;
    let stream = state
        .blobs
        .read(&result.path)
        .await
        .map_err(|e| ApiError::Gone {
            message: format!("the result file is gone: {e}"),
        })?;
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    let filename = format!("{}.{}", job.id, result.format.extension());
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                result.format.content_type().to_owned(),
            ),
            (header::CONTENT_LENGTH, result.bytes.to_string()),
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
