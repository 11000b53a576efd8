//! The Azure Service Bus transport, over Service Bus's REST API.
//!
//! Every call is an HTTPS request signed with a Shared Access Signature made from the
//! connection string ([`client`]); the endpoint comes from the connection string, so the same
//! code talks to a namespace, or to the in-repo double in tests (`UseDevelopmentEmulator=true`
//! selects plain HTTP). The HTTP client can be injected ([`ServiceBusTransport::with_http`]).
//!
//! The REST client is written here rather than taken from `azure_messaging_servicebus`: the
//! only release on crates.io (0.21) is the frozen "legacy" SDK line, which fixes the host to
//! `*.servicebus.windows.net`, has no batch send, settles only through the object a receive
//! returned (no settle by sequence number and lock token) and reads bodies as strings; the
//! current SDK line speaks AMQP only. The protocol subset used here is small and documented:
//!
//! | operation       | REST call                                                          |
//! |-----------------|--------------------------------------------------------------------|
//! | ensure_queue    | `PUT /{queue}` (Atom `QueueDescription`; `If-Match: *` to update)   |
//! | send            | `POST /{queue}/messages`, batches of `vnd.microsoft.servicebus.json` |
//! | receive         | `POST /{queue}/messages/head?timeout=N` (peek-lock), one per message |
//! | complete        | `DELETE /{queue}/messages/{sequence}/{lock-token}`                  |
//! | abandon         | `PUT` on the same path (unlock)                                    |
//! | renew_lock      | `POST` on the same path                                            |
//! | dead letters    | the same calls on `/{queue}/$DeadLetterQueue/…`                      |
//! | depth           | `GET /{queue}` (`CountDetails`)                                     |
//!
//! ## Where Service Bus's REST API differs, and what this transport does
//! - **No explicit dead-lettering.** [`Transport::dead_letter`] answers
//!   [`QueueError::Unsupported`]; callers take a message out of circulation with
//!   [`super::consume::reject`], which records it in Postgres and completes it. Service Bus
//!   still dead-letters by itself at the queue's `MaxDeliveryCount`.
//! - **No delayed abandon.** `abandon` with a delay sends a copy scheduled for then, carrying
//!   the original message id and the deliveries so far in application properties
//!   ([`ORIGINAL_ID`], [`CARRIED_DELIVERIES`]), and completes the original. Receivers see the
//!   original id and the total delivery count. Scheduled times have one-second resolution,
//!   rounded up. Service Bus's own `MaxDeliveryCount` counts the deliveries of one copy; the
//!   services check the total themselves before abandoning.
//! - **Duplicates are dropped silently**, so [`SendReport::duplicates`] is always 0.
//! - **No browsing of dead letters.** `peek_dead_letters` locks dead letters one by one until
//!   it has enough, then unlocks them all: the cost grows with the number of dead letters
//!   before `after`. `resubmit_dead_letters` works the same way and sends fresh copies (new
//!   Service Bus message ids so duplicate detection lets them through; receivers see the
//!   original id).
//! - **Depth** has no locked count (reported as 0).
//! - Application property names come back lower-cased (they travel as HTTP headers), and
//!   bodies must be UTF-8 (they travel as JSON strings in batches).

pub mod atom;
mod client;
mod requests;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use url::Url;
use uuid::Uuid;

use client::Failure;
pub use client::{ConnectionString, SasSigner, sas_token};
use wire::{Delivered, broker_properties, encoded_entry, lock, to_dead_letter};

use super::{
    Capabilities, DeadLetter, LockToken, OutgoingMessage, QueueDepth, QueueError, QueueName,
    QueueSpec, ReceivedMessage, SendReport, Transport,
};

/// Application property holding the original message id on copies this transport makes.
pub const ORIGINAL_ID: &str = "offload-message-id";
/// Application property holding the deliveries of earlier copies of a message.
pub const CARRIED_DELIVERIES: &str = "offload-deliveries";

const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";
const ATOM_CONTENT_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";
const API_VERSION: &str = "2021-05";
/// A batch request's body stays under the standard tier's 256 KB message limit.
const MAX_BATCH_BYTES: usize = 192 * 1024;
const MAX_BATCH_MESSAGES: usize = 500;
/// Peek-lock requests in flight at once when a receive asks for several messages.
const PARALLEL_RECEIVES: usize = 16;
/// Time allowed for a request beyond its long-poll wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Application properties Service Bus sets on dead letters.
const DEAD_LETTER_REASON: &str = "deadletterreason";
const DEAD_LETTER_DESCRIPTION: &str = "deadlettererrordescription";

/// A Service Bus namespace reached over its REST API.
#[derive(Debug)]
pub struct ServiceBusTransport {
    http: reqwest::Client,
    endpoint: Url,
    signer: SasSigner,
    /// A namespace (not a local stand-in): its minimum durations apply.
    namespace: bool,
    /// Lock durations of the queues this process has ensured or looked at.
    lock_durations: Mutex<HashMap<QueueName, Duration>>,
    /// Messages this process holds a lock on: what an abandon with a delay must copy.
    held: Mutex<HashMap<Uuid, Held>>,
}

#[derive(Clone, Debug)]
struct Held {
    message_id: String,
    body: Bytes,
    properties: BTreeMap<String, String>,
    delivery_count: u32,
    locked_until: DateTime<Utc>,
}

impl ServiceBusTransport {
    /// A transport for the namespace of `connection` (see [`ConnectionString::parse`]).
    pub fn new(connection: &ConnectionString) -> Result<Self, QueueError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| QueueError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self::with_http(connection, http))
    }

    /// A transport sending its requests through `http`.
    pub fn with_http(connection: &ConnectionString, http: reqwest::Client) -> Self {
        Self {
            http,
            endpoint: connection.endpoint.clone(),
            signer: SasSigner::new(connection),
            namespace: !connection.emulator,
            lock_durations: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Transport for ServiceBusTransport {
    fn capabilities(&self) -> Capabilities {
        // Service Bus's documented minimums; local stand-ins take shorter ones, for tests.
        let (min_lock, min_window) = if self.namespace { (5, 20) } else { (0, 0) };
        Capabilities {
            dead_letter: false,
            reports_duplicates: false,
            counts_locked: false,
            browse_dead_letters: false,
            min_lock_duration: Duration::from_secs(min_lock),
            min_dedupe_window: Duration::from_secs(min_window),
            max_lock_duration: Duration::from_secs(if self.namespace { 300 } else { 3600 }),
        }
    }

    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let invalid = |problem: String| QueueError::InvalidSpec {
            queue: spec.name.clone(),
            problem,
        };
        // Only what differs is written: services starting against queues that are already
        // as configured need no Manage rights.
        let update = match self.describe(&spec.name).await {
            Ok(d) => {
                let same = d.lock_duration == Some(spec.lock_duration)
                    && d.requires_duplicate_detection == Some(!spec.dedupe_window.is_zero())
                    && d.max_delivery_count == Some(spec.max_delivery_count)
                    && (spec.dedupe_window.is_zero()
                        || d.dedupe_window == Some(spec.dedupe_window));
                if same {
                    return Ok(());
                }
                true
            }
            Err(QueueError::UnknownQueue(_)) => false,
            Err(e) => return Err(e),
        };
        let mut resp = self.put_description(spec, update).await?;
        if resp.status() == StatusCode::CONFLICT {
            resp = self.put_description(spec, true).await?;
        }
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => {
                lock(&self.lock_durations).insert(spec.name.clone(), spec.lock_duration);
                Ok(())
            }
            StatusCode::BAD_REQUEST => Err(invalid(Failure::read(resp).await.body)),
            _ => Err(Failure::read(resp).await.unexpected("creating a queue")),
        }
    }

    async fn send(
        &self,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<SendReport, QueueError> {
        // Every message is checked before any is sent, so a bad one refuses the whole call.
        let entries = messages
            .iter()
            .map(|m| Ok((m.message_id.as_str(), encoded_entry(m)?)))
            .collect::<Result<Vec<_>, QueueError>>()?;
        let mut start = 0;
        while start < entries.len() {
            let mut body = b"[".to_vec();
            let mut end = start;
            while end < entries.len()
                && end - start < MAX_BATCH_MESSAGES
                && (end == start || body.len() + entries[end].1.len() + 2 <= MAX_BATCH_BYTES)
            {
                if end > start {
                    body.push(b',');
                }
                body.extend_from_slice(&entries[end].1);
                end += 1;
            }
            body.push(b']');
            self.send_batch(queue, body, entries[start].0).await?;
            start = end;
        }
        Ok(SendReport {
            accepted: messages.len(),
            duplicates: 0,
        })
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let Some(first) = self.take(queue, false, wait, false).await? else {
            return Ok(Vec::new());
        };
        let mut out = vec![self.hold(queue, first).await?];
        while out.len() < max {
            let n = (max - out.len()).min(PARALLEL_RECEIVES);
            let takes = (0..n).map(|_| self.take(queue, false, Duration::ZERO, false));
            let (mut drained, mut failed) = (false, false);
            // Every message locked in this round is returned, whatever happened to the others.
            for r in futures::future::join_all(takes).await {
                match r {
                    Ok(Some(d)) => match self.hold(queue, d).await {
                        Ok(m) => out.push(m),
                        Err(e) => {
                            tracing::warn!(%queue, error = %e, "a received message was unusable");
                            failed = true;
                        }
                    },
                    Ok(None) => drained = true,
                    Err(e) => {
                        tracing::warn!(%queue, error = %e, "receiving more messages failed");
                        failed = true;
                    }
                }
            }
            if drained || failed {
                break;
            }
        }
        // Parallel requests are answered in any order; each round took the lowest sequences.
        out.sort_by_key(|m| m.lock.sequence);
        Ok(out)
    }

    async fn complete(&self, queue: &QueueName, lock_token: &LockToken) -> Result<(), QueueError> {
        let r = self.settle(Method::DELETE, queue, false, lock_token).await;
        lock(&self.held).remove(&lock_token.token);
        r.map(drop)
    }

    async fn complete_batch(
        &self,
        queue: &QueueName,
        locks: &[LockToken],
    ) -> Result<Vec<LockToken>, QueueError> {
        let mut lost = Vec::new();
        for chunk in locks.chunks(PARALLEL_RECEIVES) {
            let completes = chunk.iter().map(|l| self.complete(queue, l));
            for (l, r) in chunk.iter().zip(futures::future::join_all(completes).await) {
                match r {
                    Ok(()) => {}
                    Err(QueueError::LockLost { .. }) => lost.push(*l),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(lost)
    }

    async fn abandon(
        &self,
        queue: &QueueName,
        lock_token: &LockToken,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if delay.is_zero() {
            let r = self.settle(Method::PUT, queue, false, lock_token).await;
            lock(&self.held).remove(&lock_token.token);
            return r.map(drop);
        }
        let held = lock(&self.held).get(&lock_token.token).cloned();
        let Some(held) = held else {
            return Err(QueueError::LockLost {
                sequence: lock_token.sequence,
            });
        };
        // Make sure the lock is still ours before a copy exists, then copy, then complete.
        self.renew_lock(queue, lock_token).await?;
        // Named after the original: an abandon repeated after a crash makes the same copy,
        // which duplicate detection drops.
        let mut copy =
            OutgoingMessage::new(format!("abandoned:{}", lock_token.sequence), held.body)
                .scheduled_at(after(Utc::now(), delay.min(super::MAX_DELAY)));
        copy.properties = held.properties;
        copy.properties.insert(ORIGINAL_ID.into(), held.message_id);
        copy.properties
            .insert(CARRIED_DELIVERIES.into(), held.delivery_count.to_string());
        self.send(queue, &[copy]).await?;
        self.complete(queue, lock_token).await
    }

    async fn dead_letter(
        &self,
        _queue: &QueueName,
        _lock: &LockToken,
        _reason: &str,
        _description: &str,
    ) -> Result<(), QueueError> {
        Err(QueueError::Unsupported {
            transport: "servicebus",
            operation: "dead_letter",
        })
    }

    async fn renew_lock(
        &self,
        queue: &QueueName,
        lock_token: &LockToken,
    ) -> Result<DateTime<Utc>, QueueError> {
        let resp = self.settle(Method::POST, queue, false, lock_token).await?;
        let told = broker_properties(resp.headers())
            .ok()
            .and_then(|b| b.locked_until_utc)
            .and_then(|s| atom::parse_rfc1123(&s).ok());
        let until = match told {
            Some(t) => t,
            None => after(Utc::now(), self.lock_duration(queue).await?),
        };
        if let Some(h) = lock(&self.held).get_mut(&lock_token.token) {
            h.locked_until = until;
        }
        Ok(until)
    }

    async fn peek_dead_letters(
        &self,
        queue: &QueueName,
        after: Option<i64>,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        self.browse_dead_letters(queue, |d| {
            if after.is_none_or(|a| d.sequence > a) {
                found.push(to_dead_letter(Delivered {
                    sequence: d.sequence,
                    lock_token: None,
                    message_id: d.message_id.clone(),
                    body: d.body.clone(),
                    properties: d.properties.clone(),
                    delivery_count: d.delivery_count,
                    enqueued_at: d.enqueued_at,
                    locked_until: None,
                }));
            }
            (false, found.len() >= max)
        })
        .await?;
        found.sort_by_key(|d| d.sequence);
        Ok(found)
    }

    async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.take(queue, true, Duration::ZERO, true).await? {
                Some(d) => out.push(to_dead_letter(d)),
                None => break,
            }
        }
        Ok(out)
    }

    async fn resubmit_dead_letters(
        &self,
        queue: &QueueName,
        sequences: &[i64],
    ) -> Result<usize, QueueError> {
        let mut wanted: HashSet<i64> = sequences.iter().copied().collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let taken = self
            .browse_dead_letters(queue, |d| {
                let take = wanted.remove(&d.sequence);
                (take, wanted.is_empty())
            })
            .await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let copies: Vec<_> = taken
            .iter()
            .map(|(_, d)| {
                let dead = to_dead_letter(Delivered {
                    sequence: d.sequence,
                    lock_token: None,
                    message_id: d.message_id.clone(),
                    body: d.body.clone(),
                    properties: d.properties.clone(),
                    delivery_count: 0,
                    enqueued_at: d.enqueued_at,
                    locked_until: None,
                });
                let mut copy =
                    OutgoingMessage::new(format!("resubmitted:{}", d.sequence), dead.body);
                copy.properties = dead.properties;
                copy.properties.insert(ORIGINAL_ID.into(), dead.message_id);
                copy
            })
            .collect();
        let locks: Vec<_> = taken.iter().map(|(l, _)| *l).collect();
        if let Err(e) = self.send(queue, &copies).await {
            self.unlock_all(queue, &locks).await;
            return Err(e);
        }
        for l in &locks {
            // A lost lock leaves the dead letter in place beside its resubmitted copy (a
            // second resubmit of it is dropped as a duplicate); the others still go.
            match self.settle(Method::DELETE, queue, true, l).await {
                Ok(_) | Err(QueueError::LockLost { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(locks.len())
    }

    async fn lock_dead_letters(
        &self,
        queue: &QueueName,
        max: usize,
    ) -> Result<Vec<(LockToken, DeadLetter)>, QueueError> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(d) = self.take(queue, true, Duration::ZERO, false).await? else {
                break;
            };
            let Some(token) = d.lock_token else {
                return Err(QueueError::Broker(
                    "a dead letter came without a LockToken".into(),
                ));
            };
            let lock = LockToken {
                sequence: d.sequence,
                token,
            };
            out.push((lock, to_dead_letter(d)));
        }
        Ok(out)
    }

    async fn complete_dead_letter(
        &self,
        queue: &QueueName,
        lock: &LockToken,
    ) -> Result<(), QueueError> {
        self.settle(Method::DELETE, queue, true, lock)
            .await
            .map(drop)
    }

    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth, QueueError> {
        let d = self.describe(queue).await?;
        Ok(QueueDepth {
            active: d.active,
            locked: 0,
            scheduled: d.scheduled,
            dead_lettered: d.dead_lettered,
        })
    }
}

/// `now + d`, saturating: never the panic of `DateTime + TimeDelta` on overflow.
pub(super) fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
