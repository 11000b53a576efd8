//! Talking to one source API: requests carry the configured credential, answers are
//! classified into data, transient trouble (worth another try) and permanent failures.
//!
//! Redirects are not followed: a redirect to another host would carry the credential
//! header along (reqwest strips only `Authorization` on such redirects, and the header
//! name is configurable). Error texts name the path and the status, never the credential.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use jobs_core::config::SourceConfig;

/// A configured source and an HTTP client for it.
#[derive(Debug, Clone)]
pub struct SourceClient {
    pub name: String,
    pub cfg: SourceConfig,
    http: reqwest::Client,
}

/// Why a request gave no data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// A timeout, a lost connection, a 5xx, a 408 or a 429: another try may work.
    #[error("{reason}")]
    Transient {
        reason: String,
        /// What the source asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Another 4xx, or an answer that is not what the configuration describes.
    #[error("{reason}")]
    Permanent { reason: String },
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    /// From sending the request to having read the whole body.
    pub latency: Duration,
}

impl SourceClient {
    pub fn new(name: &str, cfg: &SourceConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout())
            .timeout(cfg.request_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("offload-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client of source `{name}`: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            http,
        })
    }

    /// One GET of `path` with `query`, classified.
    pub async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Answer, FetchError> {
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        let mut request = self.http.get(&url).query(query);
        if let Some(secret) = &self.cfg.secret {
            let value = if self.cfg.auth_scheme.is_empty() {
                secret.expose_secret().to_owned()
            } else {
                format!("{} {}", self.cfg.auth_scheme, secret.expose_secret())
            };
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                FetchError::Permanent {
                    reason: format!(
                        "the credential of source `{}` is not a valid header value",
                        self.name
                    ),
                }
            })?;
            value.set_sensitive(true);
            request = request.header(self.cfg.auth_header.as_str(), value);
        }
        let started = Instant::now();
        let what = format!("GET {path}");
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        if status.is_success() {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport_error(&what, e))?;
            let latency = started.elapsed();
            let body = serde_json::from_slice(&bytes).map_err(|e| FetchError::Permanent {
                reason: format!("{what}: the answer is not JSON: {e}"),
            })?;
            return Ok(Answer { body, latency });
        }
        // Cut to the queue's longest delay here; the worker cuts it to `queue.max_delay_secs`.
        let retry_after = jobs_core::net::retry_after(
            response.headers(),
            Utc::now(),
            jobs_core::config::MAX_DELAY,
        );
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Err(FetchError::Transient {
                reason: format!("{what}: the source answered {status}"),
                retry_after,
            });
        }
        let detail: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Err(FetchError::Permanent {
            reason: format!("{what}: the source answered {status}: {detail}"),
        })
    }
}

fn transport_error(what: &str, e: reqwest::Error) -> FetchError {
    // Without the URL: it is in `what` already, and reqwest's own text would repeat it.
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    FetchError::Transient {
        reason: format!("{what}: {kind}: {e}"),
        retry_after: None,
    }
}

/// The value at JSON pointer `pointer` (`""` is the whole document).
pub fn at_pointer<'a>(body: &'a Value, pointer: &str) -> Option<&'a Value> {
    body.pointer(pointer)
}
