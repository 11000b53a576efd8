//! Offload's queues: the [`Transport`] trait with Service Bus semantics and its two
//! implementations ([`postgres`], [`servicebus`]), the [`outbox`] that sends with a database
//! transaction, the receive loops every service runs ([`consume`]), the queues the services
//! talk through and their messages ([`messages`]), and what a service starts with
//! ([`runtime`], [`service`]). Depends on `jobs-core` only.
//!
//! Every transport offers the same operations with the same meaning, and passes the same
//! contract test suite (this crate's `tests/it/queue_contract.rs`):
//! - **send** one message or a batch; a message id seen within the queue's duplicate
//!   detection window is dropped (not an error); a message may be scheduled for later;
//! - **receive** up to N messages under a peek-lock that lasts the queue's lock duration,
//!   waiting up to a given time for the first one; each receive increments the message's
//!   delivery count;
//! - **complete** (the message is gone), **abandon** (visible again, optionally after a delay),
//!   **dead-letter** (moved to the dead-letter queue with a reason), **renew** the lock;
//!   each needs the lock token of the current lock — a token from an expired lock is refused
//!   with [`QueueError::LockLost`], so it cannot settle a message someone else now holds;
//! - a lock that expires makes the message receivable again; a message that has been
//!   delivered `max_delivery_count` times goes to the dead-letter queue by itself;
//! - dead letters can be listed, received (taken away) and resubmitted;
//! - queue depth: active, scheduled and dead-lettered counts.
//!
//! Where a broker cannot do one of these (Service Bus's REST API has no explicit
//! dead-lettering, for one), [`Transport::capabilities`] says so and the transport's module
//! documents what it does instead.

pub mod consume;
pub mod messages;
pub mod outbox;
pub mod postgres;
pub mod runtime;
pub mod service;
pub mod servicebus;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use postgres::{PgTransport, PgTransportOptions, purge_expired_dedupe, vacuum_if_needed};
pub use servicebus::{ConnectionString, ServiceBusTransport};

/// Largest message body accepted, as Service Bus's standard tier.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest message id accepted, as Service Bus.
pub const MAX_MESSAGE_ID_LEN: usize = 128;
pub use jobs_core::config::MAX_DELAY;

/// A queue's name: 1–100 characters of ASCII letters, digits, `.`, `-` and `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid queue name {0:?}: expected 1-100 characters of letters, digits, '.', '-' and '_'")]
pub struct InvalidQueueName(pub String);

impl QueueName {
    pub fn parse(s: &str) -> Result<Self, InvalidQueueName> {
        let ok = (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidQueueName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queue and its settings, as Service Bus's queue properties of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: QueueName,
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
    /// Zero disables duplicate detection.
    pub dedupe_window: Duration,
}

impl QueueSpec {
    /// A queue with the configured defaults.
    pub fn from_config(name: QueueName, cfg: &jobs_core::config::QueueConfig) -> Self {
        Self {
            name,
            lock_duration: cfg.lock_duration(),
            max_delivery_count: cfg.max_delivery_count,
            dedupe_window: cfg.dedupe_window(),
        }
    }
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Duplicate detection key; deterministic for work items (`{job_id}:{seq}`).
    pub message_id: String,
    pub body: Bytes,
    /// Application properties (trace context, content type): small strings only.
    pub properties: BTreeMap<String, String>,
    /// Not receivable before this time.
    pub scheduled_at: Option<DateTime<Utc>>,
}

impl OutgoingMessage {
    pub fn new(message_id: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.into(),
            properties: BTreeMap::new(),
            scheduled_at: None,
        }
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Checks the limits every transport enforces, naming the message at fault.
    pub fn validate(&self) -> Result<(), QueueError> {
        let invalid = |problem: String| {
            Err(QueueError::InvalidMessage {
                message_id: self.message_id.clone(),
                problem,
            })
        };
        if self.message_id.is_empty() || self.message_id.len() > MAX_MESSAGE_ID_LEN {
            return invalid(format!("message id must be 1-{MAX_MESSAGE_ID_LEN} bytes"));
        }
        if self.body.len() > MAX_BODY_BYTES {
            return invalid(format!(
                "body is {} bytes, over {MAX_BODY_BYTES}",
                self.body.len()
            ));
        }
        Ok(())
    }
}

/// Proof of holding a message's lock: the message's sequence number and the token of the
/// lock. Only the holder of the current lock can settle or renew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockToken {
    pub sequence: i64,
    pub token: Uuid,
}

/// A message received under a peek-lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub lock: LockToken,
    pub message_id: String,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
    /// Deliveries so far, this one included (1 on the first receive).
    pub delivery_count: u32,
    pub enqueued_at: DateTime<Utc>,
    pub locked_until: DateTime<Utc>,
}

/// A message in a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub sequence: i64,
    pub message_id: String,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
    pub delivery_count: u32,
    pub enqueued_at: DateTime<Utc>,
    pub reason: String,
    pub description: Option<String>,
    pub dead_lettered_at: DateTime<Utc>,
}

/// Reason recorded for messages that exceeded the queue's max delivery count (Service Bus's
/// own wording).
pub const MAX_DELIVERY_REASON: &str = "MaxDeliveryCountExceeded";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Messages now in the queue.
    pub accepted: usize,
    /// Messages dropped because their id was seen within the duplicate detection window.
    pub duplicates: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Receivable or locked (as Service Bus's active count, which includes locked).
    pub active: u64,
    /// Of `active`, currently locked by a receiver.
    pub locked: u64,
    /// Not receivable before their scheduled time (or an abandon delay).
    pub scheduled: u64,
    pub dead_lettered: u64,
}

/// What a transport can do beyond the operations every one has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Transport::dead_letter`] works; otherwise use [`consume::reject`].
    pub dead_letter: bool,
    /// [`SendReport::duplicates`] counts the messages dropped as duplicates; otherwise it is
    /// always 0 and duplicates are dropped silently.
    pub reports_duplicates: bool,
    /// [`QueueDepth::locked`] is counted; otherwise it is always 0.
    pub counts_locked: bool,
    /// Dead letters can be listed without receiving them. Otherwise listing locks and
    /// unlocks them, which the broker counts as deliveries of the dead letter.
    pub browse_dead_letters: bool,
    /// The shortest lock duration and duplicate detection window the broker accepts.
    pub min_lock_duration: Duration,
    pub min_dedupe_window: Duration,
    /// The longest lock duration the broker accepts.
    pub max_lock_duration: Duration,
}

impl Capabilities {
    /// Everything the module documentation describes.
    pub const ALL: Self = Self {
        dead_letter: true,
        reports_duplicates: true,
        counts_locked: true,
        browse_dead_letters: true,
        min_lock_duration: Duration::ZERO,
        min_dedupe_window: Duration::ZERO,
        max_lock_duration: Duration::MAX,
    };

    /// Why `spec` would be refused by the broker, naming the configuration key at fault.
    pub fn check(&self, spec: &QueueSpec, lock_key: &str) -> Result<(), QueueError> {
        let invalid = |problem: String| {
            Err(QueueError::InvalidSpec {
                queue: spec.name.clone(),
                problem,
            })
        };
        if spec.lock_duration < self.min_lock_duration
            || spec.lock_duration > self.max_lock_duration
        {
            return invalid(format!(
                "its lock duration ({:?}, from `{lock_key}`) must be between {:?} and {:?} on this transport",
                spec.lock_duration, self.min_lock_duration, self.max_lock_duration
            ));
        }
        if !spec.dedupe_window.is_zero() && spec.dedupe_window < self.min_dedupe_window {
            return invalid(format!(
                "`queue.dedupe_window_secs` must be 0 or at least {:?} on this transport",
                self.min_dedupe_window
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {0} does not exist; create it with ensure_queue")]
    UnknownQueue(QueueName),
    #[error("the lock on message {sequence} was lost (it expired or another receiver holds it)")]
    LockLost { sequence: i64 },
    #[error("message {message_id:?} was refused: {problem}")]
    InvalidMessage { message_id: String, problem: String },
    #[error("queue settings for {queue} are invalid: {problem}")]
    InvalidSpec { queue: QueueName, problem: String },
    #[error("queue database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("message broker: {0}")]
    Broker(String),
    #[error("the {transport} transport cannot {operation}")]
    Unsupported {
        transport: &'static str,
        operation: &'static str,
    },
    #[error("queue transport configuration: {0}")]
    Config(String),
}

impl From<jobs_core::config::servicebus::ConnectionStringError> for QueueError {
    fn from(e: jobs_core::config::servicebus::ConnectionStringError) -> Self {
        Self::Config(e.to_string())
    }
}

/// A queue transport. See the module documentation for the semantics every implementation
/// must keep.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// What this transport can do beyond the common operations.
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// Creates the queue, or updates its settings when it exists.
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<(), QueueError>;

    /// Sends a batch atomically: all messages are stored or none is.
    async fn send(
        &self,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<SendReport, QueueError>;

    /// Receives up to `max` messages, waiting up to `wait` for at least one. Returns an
    /// empty vector when none arrived in time.
    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// [`Transport::receive`] that stops waiting once `stop` is cancelled. A claim of
    /// messages that has begun is never interrupted: whatever it locked is returned, for
    /// the caller to give back, so nothing is left locked by a receive no one awaits.
    ///
    /// The default waits for `receive` to answer (at most `wait` plus the transport's own
    /// call timeout): a broker's long poll cannot be withdrawn without risking a message it
    /// locks meanwhile.
    async fn receive_until(
        &self,
        queue: &QueueName,
        max: usize,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let _ = stop;
        self.receive(queue, max, wait).await
    }

    /// Completes (removes) a message whose lock the caller holds.
    async fn complete(&self, queue: &QueueName, lock: &LockToken) -> Result<(), QueueError>;

    /// Completes many messages; returns the locks that were no longer held (their messages
    /// were not completed). The default settles one at a time.
    async fn complete_batch(
        &self,
        queue: &QueueName,
        locks: &[LockToken],
    ) -> Result<Vec<LockToken>, QueueError> {
        let mut lost = Vec::new();
        for lock in locks {
            match self.complete(queue, lock).await {
                Ok(()) => {}
                Err(QueueError::LockLost { .. }) => lost.push(*lock),
                Err(e) => return Err(e),
            }
        }
        Ok(lost)
    }

    /// Releases the lock; the message is receivable again after `delay` (at most
    /// [`MAX_DELAY`]). When the message has reached the max delivery count it goes to the
    /// dead-letter queue instead.
    async fn abandon(
        &self,
        queue: &QueueName,
        lock: &LockToken,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Moves a locked message to the dead-letter queue with a reason.
    async fn dead_letter(
        &self,
        queue: &QueueName,
        lock: &LockToken,
        reason: &str,
        description: &str,
    ) -> Result<(), QueueError>;

    /// Extends the lock by the queue's lock duration from now; returns the new expiry.
    async fn renew_lock(
        &self,
        queue: &QueueName,
        lock: &LockToken,
    ) -> Result<DateTime<Utc>, QueueError>;

    /// Lists dead letters after sequence `after`, oldest first, without removing them.
    async fn peek_dead_letters(
        &self,
        queue: &QueueName,
        after: Option<i64>,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;

    /// Takes up to `max` dead letters away (receive-and-delete), oldest first.
    async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;

    /// Moves dead letters back to the queue as fresh messages (delivery count 0, same
    /// message id, not subject to duplicate detection). Returns how many were moved.
    async fn resubmit_dead_letters(
        &self,
        queue: &QueueName,
        sequences: &[i64],
    ) -> Result<usize, QueueError>;

    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth, QueueError>;

    /// Locks up to `max` dead letters, oldest first, for the caller, who removes each with
    /// [`Transport::complete_dead_letter`] once it has dealt with it; a dead letter whose
    /// lock expires can be locked again. For brokers that cannot list dead letters without
    /// receiving them (see [`Capabilities::browse_dead_letters`]).
    async fn lock_dead_letters(
        &self,
        _queue: &QueueName,
        _max: usize,
    ) -> Result<Vec<(LockToken, DeadLetter)>, QueueError> {
        Err(QueueError::Unsupported {
            transport: "postgres",
            operation: "lock_dead_letters",
        })
    }

    /// Removes a dead letter locked by [`Transport::lock_dead_letters`].
    async fn complete_dead_letter(
        &self,
        _queue: &QueueName,
        _lock: &LockToken,
    ) -> Result<(), QueueError> {
        Err(QueueError::Unsupported {
            transport: "postgres",
            operation: "complete_dead_letter",
        })
    }
}
