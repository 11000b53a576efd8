//! The namespace's state: queues, their messages, locks and duplicate-detection history.
//!
//! Everything here is plain synchronous logic over an explicit `now`, so the semantics the
//! double mirrors from Service Bus (peek-lock, lock expiry and redelivery, `MaxDeliveryCount`
//! dead-lettering, scheduled messages, duplicate detection) are unit-tested with exact times.
//! The HTTP layer keeps a [`Namespace`] behind a mutex and never holds it across an await.
//!
//! Time-driven transitions (a lock expiring, a scheduled time arriving) happen lazily: each
//! operation on a queue first brings it up to `now` ([`Queue::catch_up`]), so counts and
//! receives always reflect them. Long-polling receivers sleep until [`Queue::next_change`] or
//! until the queue's [`Notify`] fires.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::atom::QueueDescription;

mod entity;
#[cfg(test)]
mod tests;

use entity::Entity;
pub use entity::{Lock, StoredMessage};

/// Failures of state operations; the HTTP layer maps each to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("queue not found")]
    QueueNotFound,
    #[error("queue already exists")]
    QueueExists,
    #[error("RequiresDuplicateDetection cannot be changed")]
    DuplicateDetectionImmutable,
    #[error("lock lost or message not found")]
    LockLost,
}

/// A valid queue name: 1–100 ASCII letters, digits, `.`, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(name: &str) -> Option<Self> {
        let valid = (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        valid.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A queue's settings, as `PUT /{queue}` sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub lock_duration: Duration,
    pub requires_duplicate_detection: bool,
    pub duplicate_detection_window: Duration,
    pub max_delivery_count: u32,
}

impl Default for QueueSettings {
    /// The real service's defaults.
    fn default() -> Self {
        Self {
            lock_duration: Duration::from_secs(60),
            requires_duplicate_detection: false,
            duplicate_detection_window: Duration::from_secs(10 * 60),
            max_delivery_count: 10,
        }
    }
}

/// Message counts as `GET /{queue}` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Receivable or locked messages of the main entity.
    pub active: u64,
    /// Messages in the dead-letter sub-entity.
    pub dead_letter: u64,
    /// Main-entity messages waiting for their scheduled time.
    pub scheduled: u64,
}

impl Counts {
    /// `MessageCount`: everything the queue holds.
    pub fn total(&self) -> u64 {
        self.active + self.dead_letter + self.scheduled
    }
}

/// Which entity of a queue an operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Main,
    DeadLetter,
}

/// How a receive settles the message it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveMode {
    PeekLock,
    ReceiveAndDelete,
}

/// A message to enqueue, already parsed from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
    pub scheduled_enqueue_time: Option<DateTime<Utc>>,
}

/// Whether `PUT /{queue}` created the queue or updated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
}

/// All queues of the namespace.
#[derive(Debug, Default)]
pub struct Namespace {
    queues: HashMap<QueueName, Queue>,
}

impl Namespace {
    /// Creates the queue, or, when `update` (`If-Match: *`), changes an existing one's
    /// settings. Settings absent from `description` keep their default (create) or current
    /// value (update).
    pub fn put_queue(
        &mut self,
        name: &QueueName,
        description: &QueueDescription,
        update: bool,
    ) -> Result<PutOutcome, StateError> {
        let Some(queue) = self.queues.get_mut(name) else {
            let settings = apply(QueueSettings::default(), description);
            self.queues.insert(name.clone(), Queue::new(settings));
            return Ok(PutOutcome::Created);
        };
        if !update {
            return Err(StateError::QueueExists);
        }
        if description
            .requires_duplicate_detection
            .is_some_and(|d| d != queue.settings.requires_duplicate_detection)
        {
            return Err(StateError::DuplicateDetectionImmutable);
        }
        queue.settings = apply(queue.settings.clone(), description);
        Ok(PutOutcome::Updated)
    }

    pub fn queue(&mut self, name: &QueueName) -> Result<&mut Queue, StateError> {
        self.queues.get_mut(name).ok_or(StateError::QueueNotFound)
    }

    /// Deletes the queue with its messages; its waiting receivers wake up and find it gone.
    pub fn delete_queue(&mut self, name: &QueueName) -> Result<(), StateError> {
        let queue = self.queues.remove(name).ok_or(StateError::QueueNotFound)?;
        queue.notify.notify_waiters();
        Ok(())
    }
}

fn apply(mut settings: QueueSettings, description: &QueueDescription) -> QueueSettings {
    if let Some(d) = description.lock_duration {
        settings.lock_duration = d;
    }
    if let Some(d) = description.requires_duplicate_detection {
        settings.requires_duplicate_detection = d;
    }
    if let Some(d) = description.duplicate_detection_window {
        settings.duplicate_detection_window = d;
    }
    if let Some(n) = description.max_delivery_count {
        settings.max_delivery_count = n;
    }
    settings
}

/// One queue: its main entity, its dead-letter sub-entity and its duplicate-detection history.
#[derive(Debug)]
pub struct Queue {
    settings: QueueSettings,
    main: Entity,
    /// `$DeadLetterQueue`: no scheduling, no dedupe, no `MaxDeliveryCount`.
    dead_letter: Entity,
    dedupe: DedupeHistory,
    /// Wakes long-polling receivers of either entity whenever a message may have become
    /// receivable (send, abandon, expiry noticed). Receivers re-check the state on waking.
    notify: Arc<Notify>,
}

impl Queue {
    fn new(settings: QueueSettings) -> Self {
        Self {
            settings,
            main: Entity::default(),
            dead_letter: Entity::default(),
            dedupe: DedupeHistory::default(),
            notify: Arc::new(Notify::new()),
        }
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn notifier(&self) -> &Arc<Notify> {
        &self.notify
    }

    /// Applies every time-driven transition due by `now`: scheduled messages activate,
    /// expired locks end (redelivery, or dead-lettering at `MaxDeliveryCount`).
    pub fn catch_up(&mut self, now: DateTime<Utc>) {
        let activated = self.main.activate_due(now);
        let (released, exhausted) = self
            .main
            .release_expired_locks(now, Some(self.settings.max_delivery_count));
        for message in exhausted {
            self.dead_letter_exhausted(message);
        }
        let (released_dead, _) = self.dead_letter.release_expired_locks(now, None);
        if activated || released || released_dead {
            self.notify.notify_waiters();
        }
    }

    /// Moves a message whose delivery count reached `MaxDeliveryCount` to the dead-letter
    /// sub-entity, as the real service does, with the reason in its user properties.
    fn dead_letter_exhausted(&mut self, mut message: StoredMessage) {
        let description = format!(
            "Message could not be consumed after {} delivery attempts.",
            self.settings.max_delivery_count
        );
        set_property(
            &mut message.user_properties,
            "DeadLetterReason",
            "MaxDeliveryCountExceeded",
        );
        set_property(
            &mut message.user_properties,
            "DeadLetterErrorDescription",
            &description,
        );
        message.enqueued_sequence_number = message.sequence_number;
        self.dead_letter.enqueue(message, None);
    }

    /// Enqueues a batch into the main entity. With duplicate detection, a message id first
    /// accepted less than the history window ago (including earlier in this batch) is dropped
    /// silently. Returns how many messages were stored.
    pub fn send(&mut self, batch: Vec<NewMessage>, now: DateTime<Utc>) -> usize {
        self.catch_up(now);
        let window = delta(self.settings.duplicate_detection_window);
        let mut stored = 0;
        for message in batch {
            if self.settings.requires_duplicate_detection
                && self
                    .dedupe
                    .is_duplicate_else_record(&message.message_id, now, window)
            {
                continue;
            }
            let visible_at = message.scheduled_enqueue_time.filter(|&at| at > now);
            let stored_message = StoredMessage {
                sequence_number: 0,
                enqueued_sequence_number: 0,
                message_id: message.message_id,
                body: message.body,
                content_type: message.content_type,
                user_properties: message.user_properties,
                enqueued_at: visible_at.unwrap_or(now),
                scheduled_enqueue_time: message.scheduled_enqueue_time,
                delivery_count: 0,
                lock: None,
            };
            self.main.enqueue(stored_message, visible_at);
            stored += 1;
        }
        if self.main.has_available() {
            self.notify.notify_waiters();
        }
        stored
    }

    /// Takes the receivable message with the lowest sequence number, if any: peek-locks it for
    /// the queue's `LockDuration` under a fresh token, or removes it.
    pub fn receive(
        &mut self,
        kind: EntityKind,
        mode: ReceiveMode,
        now: DateTime<Utc>,
    ) -> Option<StoredMessage> {
        self.catch_up(now);
        let lock = Lock {
            token: Uuid::new_v4(),
            locked_until: now + delta(self.settings.lock_duration),
        };
        let entity = self.entity_mut(kind);
        match mode {
            ReceiveMode::PeekLock => entity.lock_next(lock),
            ReceiveMode::ReceiveAndDelete => entity.remove_next(),
        }
    }

    /// The earliest instant at which a message of either entity may become receivable
    /// without any request arriving (a scheduled time, a lock expiry).
    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        self.main
            .next_change()
            .into_iter()
            .chain(self.dead_letter.next_change())
            .min()
    }

    /// Completes (removes) a message locked under `token`.
    pub fn complete(
        &mut self,
        kind: EntityKind,
        target: &str,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let sequence = self.locked_message(kind, target, token, now)?;
        self.entity_mut(kind)
            .remove_locked(sequence)
            .map(drop)
            .ok_or(StateError::LockLost)
    }

    /// Abandons a lock: the message is receivable again at once, or dead-lettered if its
    /// delivery count reached `MaxDeliveryCount`.
    pub fn unlock(
        &mut self,
        kind: EntityKind,
        target: &str,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let sequence = self.locked_message(kind, target, token, now)?;
        let max = self.max_delivery_count(kind);
        if let Some(exhausted) = self.entity_mut(kind).unlock(sequence, max) {
            self.dead_letter_exhausted(exhausted);
        }
        self.notify.notify_waiters();
        Ok(())
    }

    /// Extends a lock to `now + LockDuration`; returns the message as now locked.
    pub fn renew_lock(
        &mut self,
        kind: EntityKind,
        target: &str,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<StoredMessage, StateError> {
        let sequence = self.locked_message(kind, target, token, now)?;
        let until = now + delta(self.settings.lock_duration);
        self.entity_mut(kind)
            .renew_lock(sequence, until)
            .ok_or(StateError::LockLost)
    }

    /// The counts `GET /{queue}` reports, as of `now`.
    pub fn counts(&mut self, now: DateTime<Utc>) -> Counts {
        self.catch_up(now);
        Counts {
            active: self.main.active_count(),
            dead_letter: self.dead_letter.total_count(),
            scheduled: self.main.scheduled_count(),
        }
    }

    fn locked_message(
        &mut self,
        kind: EntityKind,
        target: &str,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<i64, StateError> {
        self.catch_up(now);
        self.entity_mut(kind)
            .find_locked(target, token, now)
            .ok_or(StateError::LockLost)
    }

    fn max_delivery_count(&self, kind: EntityKind) -> Option<u32> {
        match kind {
            EntityKind::Main => Some(self.settings.max_delivery_count),
            EntityKind::DeadLetter => None,
        }
    }

    fn entity_mut(&mut self, kind: EntityKind) -> &mut Entity {
        match kind {
            EntityKind::Main => &mut self.main,
            EntityKind::DeadLetter => &mut self.dead_letter,
        }
    }
}

fn set_property(properties: &mut Vec<(String, String)>, key: &str, value: &str) {
    match properties.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.to_owned(),
        None => properties.push((key.to_owned(), value.to_owned())),
    }
}

/// Durations here are bounded (at most 7 days), so the conversion cannot overflow.
fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Message ids first accepted within the duplicate-detection window, oldest first.
#[derive(Debug, Default)]
struct DedupeHistory {
    first_accepted: HashMap<String, DateTime<Utc>>,
    /// The same entries in acceptance order, so forgetting old ones is cheap.
    order: VecDeque<(DateTime<Utc>, String)>,
}

impl DedupeHistory {
    /// True if `id` was first accepted less than `window` before `now`; otherwise records it
    /// as accepted at `now`. A dropped duplicate does not extend the window.
    fn is_duplicate_else_record(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> bool {
        self.forget_accepted_before(now - window);
        if self
            .first_accepted
            .get(id)
            .is_some_and(|&at| now - at < window)
        {
            return true;
        }
        self.first_accepted.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        false
    }

    fn forget_accepted_before(&mut self, cutoff: DateTime<Utc>) {
        while let Some((at, _)) = self.order.front() {
            if *at > cutoff {
                break;
            }
            if let Some((at, id)) = self.order.pop_front()
                && self.first_accepted.get(&id) == Some(&at)
            {
                self.first_accepted.remove(&id);
            }
        }
    }
}
