//! One message entity: a queue's main entity or its `$DeadLetterQueue` sub-entity.
//!
//! Every stored message is in exactly one of three indexes, which is what makes each
//! operation a lookup rather than a scan:
//! - `available`: receivable now, by sequence number (receivers take the lowest);
//! - `scheduled`: waiting for `ScheduledEnqueueTimeUtc`, by that time;
//! - `locked`: peek-locked, by lock expiry.
//!
//! Time only moves forward through [`Entity::activate_due`] and
//! [`Entity::release_expired_locks`], which the owning queue calls before every operation.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A message as stored, with the broker properties the double tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Assigned by the entity on enqueue: 1, 2, 3, ...
    pub sequence_number: i64,
    /// Main entity: 0 (as the real service reports for messages that were not forwarded).
    /// Dead-letter entity: the message's sequence number in the main entity.
    pub enqueued_sequence_number: i64,
    pub message_id: String,
    pub body: Bytes,
    /// The `Content-Type` the message was sent with, if it was sent alone.
    pub content_type: Option<String>,
    /// Application properties, in the order they were given.
    pub user_properties: Vec<(String, String)>,
    /// When the message became (or becomes) active: the send time, or the scheduled time.
    pub enqueued_at: DateTime<Utc>,
    pub scheduled_enqueue_time: Option<DateTime<Utc>>,
    /// Incremented each time the message is handed to a receiver.
    pub delivery_count: u32,
    /// Set while the message is peek-locked.
    pub lock: Option<Lock>,
}

/// A peek-lock held by one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub token: Uuid,
    pub locked_until: DateTime<Utc>,
}

/// The messages of one entity and the indexes over them (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Entity {
    last_sequence_number: i64,
    messages: HashMap<i64, StoredMessage>,
    available: BTreeSet<i64>,
    scheduled: BTreeSet<(DateTime<Utc>, i64)>,
    locked: BTreeSet<(DateTime<Utc>, i64)>,
}

impl Entity {
    /// Stores `message` under the next sequence number, receivable from `visible_at` (or now).
    pub fn enqueue(
        &mut self,
        mut message: StoredMessage,
        visible_at: Option<DateTime<Utc>>,
    ) -> i64 {
        self.last_sequence_number += 1;
        let sequence = self.last_sequence_number;
        message.sequence_number = sequence;
        message.lock = None;
        match visible_at {
            Some(at) => self.scheduled.insert((at, sequence)),
            None => self.available.insert(sequence),
        };
        self.messages.insert(sequence, message);
        sequence
    }

    /// Makes scheduled messages whose time has come receivable. Returns whether any did.
    pub fn activate_due(&mut self, now: DateTime<Utc>) -> bool {
        let mut any = false;
        while let Some(&(at, sequence)) = self.scheduled.first() {
            if at > now {
                break;
            }
            self.scheduled.pop_first();
            self.available.insert(sequence);
            any = true;
        }
        any
    }

    /// Ends every lock that expired by `now`. Each message becomes receivable again, except
    /// that those whose delivery count reached `max_delivery_count` are removed and returned
    /// (the caller dead-letters them), in order of lock expiry.
    pub fn release_expired_locks(
        &mut self,
        now: DateTime<Utc>,
        max_delivery_count: Option<u32>,
    ) -> (bool, Vec<StoredMessage>) {
        let mut any = false;
        let mut exhausted = Vec::new();
        while let Some(&(until, sequence)) = self.locked.first() {
            if until > now {
                break;
            }
            self.locked.pop_first();
            any = true;
            exhausted.extend(self.release(sequence, max_delivery_count));
        }
        (any, exhausted)
    }

    /// Puts a message that is in no index (its lock just ended) back where it belongs.
    fn release(&mut self, sequence: i64, max_delivery_count: Option<u32>) -> Option<StoredMessage> {
        let message = self.messages.get_mut(&sequence)?;
        message.lock = None;
        if max_delivery_count.is_some_and(|max| message.delivery_count >= max) {
            return self.messages.remove(&sequence);
        }
        self.available.insert(sequence);
        None
    }

    /// Peek-locks the lowest available message; returns a copy of it as locked.
    pub fn lock_next(&mut self, lock: Lock) -> Option<StoredMessage> {
        let sequence = self.available.pop_first()?;
        let message = self.messages.get_mut(&sequence)?;
        message.delivery_count += 1;
        message.lock = Some(lock);
        self.locked.insert((lock.locked_until, sequence));
        Some(message.clone())
    }

    /// Removes and returns the lowest available message (receive-and-delete).
    pub fn remove_next(&mut self) -> Option<StoredMessage> {
        let sequence = self.available.pop_first()?;
        let mut message = self.messages.remove(&sequence)?;
        message.delivery_count += 1;
        Some(message)
    }

    /// Finds the message a settle request names: by sequence number if `target` parses as one
    /// and such a message exists, else by message id among locked messages. It must hold the
    /// lock `token`, unexpired at `now`.
    pub fn find_locked(&self, target: &str, token: Uuid, now: DateTime<Utc>) -> Option<i64> {
        let holds_lock = |message: &StoredMessage| {
            message
                .lock
                .is_some_and(|lock| lock.token == token && lock.locked_until > now)
        };
        if let Some(message) = target.parse().ok().and_then(|s| self.messages.get(&s)) {
            return holds_lock(message).then_some(message.sequence_number);
        }
        self.locked
            .iter()
            .filter_map(|(_, sequence)| self.messages.get(sequence))
            .find(|message| message.message_id == target && holds_lock(message))
            .map(|message| message.sequence_number)
    }

    /// Removes a locked message (complete).
    pub fn remove_locked(&mut self, sequence: i64) -> Option<StoredMessage> {
        let lock = self.messages.get(&sequence)?.lock?;
        self.locked.remove(&(lock.locked_until, sequence));
        self.messages.remove(&sequence)
    }

    /// Ends a lock early (abandon). Like an expiry: returns the message if it is exhausted.
    pub fn unlock(
        &mut self,
        sequence: i64,
        max_delivery_count: Option<u32>,
    ) -> Option<StoredMessage> {
        let lock = self.messages.get(&sequence)?.lock?;
        self.locked.remove(&(lock.locked_until, sequence));
        self.release(sequence, max_delivery_count)
    }

    /// Moves a lock's expiry to `until`; returns the message as now locked.
    pub fn renew_lock(&mut self, sequence: i64, until: DateTime<Utc>) -> Option<StoredMessage> {
        let message = self.messages.get_mut(&sequence)?;
        let lock = message.lock.as_mut()?;
        self.locked.remove(&(lock.locked_until, sequence));
        lock.locked_until = until;
        self.locked.insert((until, sequence));
        Some(message.clone())
    }

    /// The earliest instant at which a scheduled message activates or a lock expires.
    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        let scheduled = self.scheduled.first().map(|&(at, _)| at);
        let lock = self.locked.first().map(|&(at, _)| at);
        scheduled.into_iter().chain(lock).min()
    }

    /// Messages that are receivable or locked (the real service's "active" count).
    pub fn active_count(&self) -> u64 {
        (self.available.len() + self.locked.len()) as u64
    }

    pub fn scheduled_count(&self) -> u64 {
        self.scheduled.len() as u64
    }

    pub fn total_count(&self) -> u64 {
        self.messages.len() as u64
    }

    /// Whether something is receivable right now (to decide whether to wake receivers).
    pub fn has_available(&self) -> bool {
        !self.available.is_empty()
    }
}
