//! The notifier: when a job finishes, POSTs a signed webhook to the URL the job was
//! submitted with, per the Standard Webhooks specification.
//!
//! Retries ride on the queue: a failed delivery abandons the `job.finished` message with
//! the next delay of the schedule (±20% jitter, or the receiver's `Retry-After` when it is
//! longer), so a retry survives a restart of the notifier. The events queue's max delivery
//! count is the schedule's length + 1: after the last retry the event is dead-lettered
//! with the last error. Every attempt is recorded (`offload.webhook_attempts`).

pub mod signing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::document::job_document;
use jobs_core::store::{JobStore, StoreError, WebhookAttempt};
use jobs_queue::consume::Consumer;
use jobs_queue::messages::{JobMessage, Queues};
use jobs_queue::{QueueError, ReceivedMessage, Transport};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const USER_AGENT: &str = concat!("offload-webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
pub struct NotifierContext {
    pub store: JobStore,
    pub transport: Arc<dyn Transport>,
    pub queues: Queues,
    pub http: reqwest::Client,
    /// Delays before the 2nd, 3rd, … attempt.
    pub schedule: Vec<Duration>,
    /// Where the API is reached, for links in payloads.
    pub base_url: String,
    /// Deliver to loopback, private and link-local addresses too (local development).
    pub allow_private_networks: bool,
    /// Per-attempt timeout (a client pinned to the checked address is built per delivery).
    pub timeout: Duration,
    /// The longest wait before a retry: a receiver's `Retry-After` is cut to it
    /// (`queue.max_delay_secs`).
    pub max_delay: Duration,
    /// How long a delivery under way at shutdown may go on (`queue.shutdown_grace_secs`).
    pub shutdown_grace: Duration,
}

impl Consumer for NotifierContext {
    fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    fn db(&self) -> &jobs_core::sqlx::PgPool {
        self.store.pool()
    }
}

impl NotifierContext {
    pub fn http_client(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY would carry the request past the address check below.
            .no_proxy()
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("job store: {0}")]
    Store(#[from] StoreError),
}

/// How one delivery attempt went.
#[derive(Debug)]
enum Delivery {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

fn settle(r: Result<(), QueueError>) -> Result<(), NotifierError> {
    match r {
        Ok(()) | Err(QueueError::LockLost { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn handle_message(
    ctx: &NotifierContext,
    msg: ReceivedMessage,
) -> Result<(), NotifierError> {
    let q = &ctx.queues.events;
    let event = match JobMessage::decode(&msg.body) {
        Ok(e @ JobMessage::Finished { .. }) => e,
        Ok(other) => {
            let why = format!("the events queue does not take {}", other.message_id());
            return settle(ctx.reject(q, &msg, "UnexpectedMessage", &why).await);
        }
        Err(e) => {
            return settle(
                ctx.reject(q, &msg, "MalformedMessage", &e.to_string())
                    .await,
            );
        }
    };
    let span =
        tracing::info_span!("notify", job_id = %event.job_id(), attempt = msg.delivery_count);
    event.trace().attach_to(&span);
    async {
        let job = match ctx.store.get_any(event.job_id()).await {
            Ok(job) => job,
            Err(StoreError::UnknownJob(id)) => {
                let why = format!("job {id} does not exist");
                return settle(ctx.reject(q, &msg, "UnknownJob", &why).await);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(url) = job
            .params
            .pointer("/notify/webhook_url")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
        else {
            return settle(ctx.transport.complete(q, &msg.lock).await);
        };
        let secret = ctx.store.ensure_tenant(&job.tenant_id, None).await?;
        let body = serde_json::to_vec(&serde_json::json!({
            "type": format!("job.{}", job.status),
            "timestamp": chrono::Utc::now(),
            "data": job_document(&job, &ctx.base_url),
        }))
        .unwrap_or_default();
        let started = Instant::now();
        let outcome = deliver(ctx, &url, &secret, &msg.message_id, &body).await;
        let (status_code, error) = match &outcome {
            Delivery::Delivered(s) => (Some(*s), None),
            Delivery::Failed { status, error, .. } => (*status, Some(error.as_str())),
        };
        ctx.store
            .record_webhook_attempt(&WebhookAttempt {
                job_id: job.id,
                attempt: msg.delivery_count,
                url: &url,
                status_code,
                error,
                duration_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            })
            .await?;
        match outcome {
            Delivery::Delivered(status) => {
                tracing::info!(status, "webhook delivered");
                settle(ctx.transport.complete(q, &msg.lock).await)
            }
            Delivery::Failed {
                error, retry_after, ..
            } => {
                let next = ctx
                    .schedule
                    .get(msg.delivery_count.saturating_sub(1) as usize);
                match next {
                    Some(delay) => {
                        let jitter = 0.8 + 0.4 * rand::random::<f64>();
                        let delay = delay
                            .mul_f64(jitter)
                            .max(retry_after.unwrap_or_default())
                            .min(ctx.max_delay);
                        tracing::warn!(%error, ?delay, "webhook delivery failed; will retry");
                        settle(ctx.transport.abandon(q, &msg.lock, delay).await)
                    }
                    None => {
                        tracing::warn!(%error, "webhook delivery failed for the last time");
                        let why = format!("{} attempts failed; last: {error}", msg.delivery_count);
                        settle(ctx.reject(q, &msg, "WebhookFailed", &why).await)
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Resolves the URL's host and refuses internal addresses (unless allowed); returns a
/// client pinned to the checked addresses, so DNS cannot answer differently for the request
/// itself.
async fn checked_client(
    http: &reqwest::Client,
    allow_private: bool,
    timeout: Duration,
    url: &str,
) -> Result<reqwest::Client, String> {
    if allow_private {
        return Ok(http.clone());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !jobs_core::net::is_public(a.ip())) {
        return Err(format!(
            "refused: {host} resolves to a loopback, private or link-local address \
             (set notifier.allow_private_networks to allow it)"
        ));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from HTTP(S)_PROXY would connect to the host itself, past the addresses
        // checked and pinned here.
        .no_proxy()
        .user_agent(USER_AGENT)
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| e.to_string())
}

async fn deliver(
    ctx: &NotifierContext,
    url: &str,
    secret: &str,
    id: &str,
    body: &[u8],
) -> Delivery {
    let client = match checked_client(&ctx.http, ctx.allow_private_networks, ctx.timeout, url).await
    {
        Ok(c) => c,
        Err(error) => {
            return Delivery::Failed {
                status: None,
                error,
                retry_after: None,
            };
        }
    };
    let timestamp = chrono::Utc::now().timestamp();
    let signature = match signing::sign(secret, id, timestamp, body) {
        Ok(s) => s,
        Err(e) => {
            return Delivery::Failed {
                status: None,
                error: e.to_string(),
                retry_after: None,
            };
        }
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Delivery::Delivered(resp.status().as_u16()),
        Ok(resp) => {
            let retry_after =
                jobs_core::net::retry_after(resp.headers(), chrono::Utc::now(), ctx.max_delay);
            Delivery::Failed {
                status: Some(resp.status().as_u16()),
                error: format!("the receiver answered {}", resp.status()),
                retry_after,
            }
        }
        // reqwest's error names the whole URL, credentials and query included.
        Err(e) => Delivery::Failed {
            status: None,
            error: format!(
                "request to {} failed: {}",
                jobs_core::net::redacted(url),
                e.without_url()
            ),
            retry_after: None,
        },
    }
}

/// Receives at most one event (waiting up to `wait`) and handles it.
pub async fn try_notify_next(ctx: &NotifierContext, wait: Duration) -> Result<bool, NotifierError> {
    let mut got = ctx.transport.receive(&ctx.queues.events, 1, wait).await?;
    let Some(msg) = got.pop() else {
        return Ok(false);
    };
    handle_message(ctx, msg).await?;
    Ok(true)
}

/// Delivers webhooks until `shutdown` is cancelled, up to `concurrency` at a time.
pub async fn run_until_stopped(
    ctx: Arc<NotifierContext>,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let (transport, queue) = (ctx.transport.clone(), ctx.queues.events.clone());
    // A delivery in progress at shutdown gets the configured grace, and at least its own
    // timeout, so that an answer on its way is not thrown away (and the webhook sent twice).
    let grace = ctx.shutdown_grace.max(ctx.timeout + Duration::from_secs(1));
    jobs_queue::consume::consume_until_stopped(
        "notifier",
        transport,
        queue,
        concurrency,
        grace,
        shutdown,
        move |msg| {
            let ctx = ctx.clone();
            async move { handle_message(&ctx, msg).await }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
        let http = reqwest::Client::new();
        let t = Duration::from_secs(1);
        for url in [
            "http://localhost:9/hook",
            "http://127.0.0.1/x",
            "http://[::1]:80/",
            "http://169.254.169.254/latest",
        ] {
            let err = checked_client(&http, false, t, url).await.unwrap_err();
            assert!(err.starts_with("refused:"), "{url}: {err}");
        }
        assert!(
            checked_client(&http, true, t, "http://127.0.0.1/x")
                .await
                .is_ok()
        );
    }
}
