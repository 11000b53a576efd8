//! Talking to one source API: requests carry the configured credential, answers are
//! classified into data, transient trouble (worth another try) and permanent failures.
//!
//! Redirects are not followed: a redirect to another host would carry the credential
//! header along (reqwest strips only `Authorization` on such redirects, and the header
//! name is configurable). Error texts name the path and the status, never the credential.

use std::sync::Arc;
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

/// What a refusal by [`PublicOnly`] says, to tell it from a network failure.
const REFUSED: &str = "the source's allow_private_networks is false";

/// A resolver that answers only with public addresses (`jobs_core::net::is_public`): a name
/// that resolves to any loopback, private or link-local address is refused outright.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !jobs_core::net::is_public(a.ip())) {
                return Err(format!(
                    "refused: {host} resolves to a loopback, private or link-local address \
                     ({REFUSED})"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl SourceClient {
    pub fn new(name: &str, cfg: &SourceConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout())
            .timeout(cfg.request_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("offload-ingest/", env!("CARGO_PKG_VERSION")));
        if !cfg.allow_private_networks {
            // Every connection goes to addresses the resolver checked; a proxy would connect
            // to the name itself, past the check.
            builder = builder.dns_resolver(Arc::new(PublicOnly)).no_proxy();
        }
        let http = builder
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
        if !self.cfg.allow_private_networks {
            // An address written in the URL is not resolved, so the resolver never sees it.
            let literal = reqwest::Url::parse(&url).ok().and_then(|u| match u.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            });
            if literal.is_some_and(|ip| !jobs_core::net::is_public(ip)) {
                return Err(FetchError::Permanent {
                    reason: format!(
                        "source `{}`: refused: its base_url is a loopback, private or \
                         link-local address (allow_private_networks is false)",
                        self.name
                    ),
                });
            }
        }
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
    // The causes say what went wrong (refused by the resolver, connection reset, …).
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    if text.contains(REFUSED) {
        // The source's own policy: no retry can change it.
        return FetchError::Permanent {
            reason: format!("{what}: {text}"),
        };
    }
    FetchError::Transient {
        reason: format!("{what}: {kind}: {text}"),
        retry_after: None,
    }
}

/// The value at JSON pointer `pointer` (`""` is the whole document).
pub fn at_pointer<'a>(body: &'a Value, pointer: &str) -> Option<&'a Value> {
    body.pointer(pointer)
}
