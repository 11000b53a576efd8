//! The REST calls behind the transport: signed requests, queue descriptions, batches,
//! peek-lock receives, settlement, and walking the dead-letter queue.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode, header};
use url::Url;

use super::client::{Failure, unreachable_broker};
use super::wire::{
    BrokerProperties, Delivered, application_properties, broker_properties, lock, restore,
};
use super::{
    API_VERSION, ATOM_CONTENT_TYPE, BATCH_CONTENT_TYPE, Held, REQUEST_TIMEOUT, ServiceBusTransport,
    atom,
};
use crate::{LockToken, QueueError, QueueName, QueueSpec, ReceivedMessage};

impl ServiceBusTransport {
    pub(super) fn url(&self, queue: &QueueName, dead_letters: bool, rest: &str) -> Url {
        let dlq = if dead_letters {
            "/$DeadLetterQueue"
        } else {
            ""
        };
        let mut url = self.endpoint.clone();
        url.set_path(&format!("/{queue}{dlq}{rest}"));
        url
    }

    /// Sends a signed request; `Err` only when no answer came.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        wait: Duration,
        what: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, QueueError> {
        let request = self
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, self.signer.authorization())
            .timeout(wait + REQUEST_TIMEOUT);
        build(request)
            .send()
            .await
            .map_err(|e| unreachable_broker(what, &e))
    }

    pub(super) async fn lock_duration(&self, queue: &QueueName) -> Result<Duration, QueueError> {
        if let Some(d) = lock(&self.lock_durations).get(queue) {
            return Ok(*d);
        }
        let d = self.describe(queue).await?;
        d.lock_duration.ok_or_else(|| {
            QueueError::Broker(format!("the description of {queue} has no LockDuration"))
        })
    }

    pub(super) async fn describe(
        &self,
        queue: &QueueName,
    ) -> Result<atom::Description, QueueError> {
        let mut url = self.url(queue, false, "");
        url.set_query(Some(&format!("api-version={API_VERSION}")));
        let resp = self
            .call(Method::GET, url, Duration::ZERO, "reading a queue", |r| r)
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(QueueError::UnknownQueue(queue.clone())),
            _ => return Err(Failure::read(resp).await.unexpected("reading a queue")),
        }
        let xml = resp
            .text()
            .await
            .map_err(|e| unreachable_broker("reading a queue", &e))?;
        let d = atom::parse_description(&xml)
            .map_err(|e| QueueError::Broker(format!("the description of {queue}: {e}")))?
            .ok_or_else(|| QueueError::UnknownQueue(queue.clone()))?;
        if let Some(lock_duration) = d.lock_duration {
            lock(&self.lock_durations).insert(queue.clone(), lock_duration);
        }
        Ok(d)
    }

    pub(super) async fn put_description(
        &self,
        spec: &QueueSpec,
        update: bool,
    ) -> Result<reqwest::Response, QueueError> {
        let mut url = self.url(&spec.name, false, "");
        url.set_query(Some(&format!("api-version={API_VERSION}")));
        let body = atom::queue_description(spec);
        self.call(Method::PUT, url, Duration::ZERO, "creating a queue", |r| {
            let r = r.header(header::CONTENT_TYPE, ATOM_CONTENT_TYPE).body(body);
            if update {
                r.header(header::IF_MATCH, "*")
            } else {
                r
            }
        })
        .await
    }

    /// One batch request: every message stored, or none.
    pub(super) async fn send_batch(
        &self,
        queue: &QueueName,
        body: Vec<u8>,
        first_id: &str,
    ) -> Result<(), QueueError> {
        let url = self.url(queue, false, "/messages");
        let resp = self
            .call(Method::POST, url, Duration::ZERO, "sending messages", |r| {
                r.header(header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
                    .body(body)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                Err(QueueError::UnknownQueue(queue.clone()))
            }
            // Service Bus answers 403 for "quota exceeded or message too large".
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::FORBIDDEN => {
                let failure = Failure::read(resp).await;
                let text = failure.body.to_ascii_lowercase();
                if failure.status == StatusCode::PAYLOAD_TOO_LARGE
                    || text.contains("size")
                    || text.contains("large")
                {
                    Err(QueueError::InvalidMessage {
                        message_id: first_id.to_owned(),
                        problem: "the batch it was in is over Service Bus's size limit".into(),
                    })
                } else {
                    Err(failure.unexpected("sending messages"))
                }
            }
            _ => Err(Failure::read(resp).await.unexpected("sending messages")),
        }
    }

    /// Peek-locks (or, with `delete`, receives and deletes) the next message, waiting up to
    /// `wait` (whole seconds) for one.
    pub(super) async fn take(
        &self,
        queue: &QueueName,
        dead_letters: bool,
        wait: Duration,
        delete: bool,
    ) -> Result<Option<Delivered>, QueueError> {
        let mut url = self.url(queue, dead_letters, "/messages/head");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        url.set_query(Some(&format!("timeout={secs}")));
        let method = if delete { Method::DELETE } else { Method::POST };
        let resp = self
            .call(method, url, Duration::from_secs(secs), "receiving", |r| {
                r.header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(None),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(QueueError::UnknownQueue(queue.clone()));
            }
            _ => return Err(Failure::read(resp).await.unexpected("receiving")),
        }
        let broker: BrokerProperties = broker_properties(resp.headers())?;
        let properties = application_properties(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| unreachable_broker("receiving", &e))?;
        let time = |s: Option<String>| s.map(|s| atom::parse_rfc1123(&s)).transpose();
        let bad = |e: String| QueueError::Broker(format!("BrokerProperties: {e}"));
        Ok(Some(Delivered {
            sequence: broker.sequence_number,
            lock_token: broker.lock_token,
            message_id: broker.message_id,
            body,
            properties,
            delivery_count: broker.delivery_count,
            enqueued_at: time(broker.enqueued_time_utc)
                .map_err(bad)?
                .unwrap_or_else(Utc::now),
            locked_until: time(broker.locked_until_utc).map_err(bad)?,
        }))
    }

    /// Completes (`DELETE`), unlocks (`PUT`) or renews (`POST`) a locked message.
    pub(super) async fn settle(
        &self,
        method: Method,
        queue: &QueueName,
        dead_letters: bool,
        lock: &LockToken,
    ) -> Result<reqwest::Response, QueueError> {
        let url = self.url(
            queue,
            dead_letters,
            &format!("/messages/{}/{}", lock.sequence, lock.token),
        );
        let resp = self
            .call(method, url, Duration::ZERO, "settling a message", |r| {
                r.header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(resp),
            StatusCode::NOT_FOUND => Err(QueueError::LockLost {
                sequence: lock.sequence,
            }),
            StatusCode::GONE => Err(QueueError::UnknownQueue(queue.clone())),
            _ => Err(Failure::read(resp).await.unexpected("settling a message")),
        }
    }

    /// Records a received message as held and turns it into what receivers see.
    pub(super) async fn hold(
        &self,
        queue: &QueueName,
        d: Delivered,
    ) -> Result<ReceivedMessage, QueueError> {
        let token = d.lock_token.ok_or_else(|| {
            QueueError::Broker(format!(
                "a peek-lock answer from {queue} carried no LockToken"
            ))
        })?;
        let (message_id, delivery_count, properties) =
            restore(d.message_id, d.delivery_count, d.properties);
        let now = Utc::now();
        let locked_until = match d.locked_until {
            Some(t) => t,
            None => {
                let lock_for = self.lock_duration(queue).await?;
                super::after(now, lock_for)
            }
        };
        let mut held = lock(&self.held);
        // Forget locks long expired (their holder never settled them).
        held.retain(|_, h| {
            h.locked_until
                .checked_add_signed(chrono::TimeDelta::minutes(1))
                .is_none_or(|t| t > now)
        });
        held.insert(
            token,
            Held {
                message_id: message_id.clone(),
                body: d.body.clone(),
                properties: properties.clone(),
                delivery_count,
                locked_until,
            },
        );
        Ok(ReceivedMessage {
            lock: LockToken {
                sequence: d.sequence,
                token,
            },
            message_id,
            body: d.body,
            properties,
            delivery_count,
            enqueued_at: d.enqueued_at,
            locked_until,
        })
    }

    /// Locks dead letters one at a time, handing each to `visit`, until `visit` says stop or
    /// there are no more; then unlocks every one that `visit` did not take. `visit` returns
    /// `(take, stop)`.
    pub(super) async fn browse_dead_letters(
        &self,
        queue: &QueueName,
        mut visit: impl FnMut(&Delivered) -> (bool, bool),
    ) -> Result<Vec<(LockToken, Delivered)>, QueueError> {
        let (mut taken, mut release, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
        let outcome = loop {
            let d = match self.take(queue, true, Duration::ZERO, false).await {
                Ok(Some(d)) => d,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let Some(token) = d.lock_token else {
                break Err(QueueError::Broker(
                    "a dead letter came without a LockToken".into(),
                ));
            };
            let lock = LockToken {
                sequence: d.sequence,
                token,
            };
            // A lock that expired during a long walk brings its message round again.
            if !seen.insert(d.sequence) {
                release.push(lock);
                break Ok(());
            }
            let (take, stop) = visit(&d);
            if take {
                taken.push((lock, d));
            } else {
                release.push(lock);
            }
            if stop {
                break Ok(());
            }
        };
        self.unlock_all(queue, &release).await;
        if let Err(e) = outcome {
            let locks: Vec<_> = taken.iter().map(|(l, _)| *l).collect();
            self.unlock_all(queue, &locks).await;
            return Err(e);
        }
        Ok(taken)
    }

    pub(super) async fn unlock_all(&self, queue: &QueueName, locks: &[LockToken]) {
        let unlocks = locks
            .iter()
            .map(|l| self.settle(Method::PUT, queue, true, l));
        for r in futures::future::join_all(unlocks).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "unlocking a browsed dead letter failed; its lock will expire");
            }
        }
    }
}
