//! Receiving under a peek-lock, and the scan floor that keeps receiving fast.
//!
//! ## The scan floor
//!
//! Receivers take the oldest visible messages through the index
//! `(queue_id, visible_at, seq)`. Every message received leaves a dead index entry at the
//! head of that index (its pre-lock version), and every completion another; until vacuum
//! removes them, a scan from the head walks over all of them — at thousands of messages a
//! second, hundreds of leaf pages per receive, and the receive path slows down as it runs.
//!
//! So each process remembers, per queue, where its last claim began: the smallest
//! `(visible_at, seq)` it claimed. The next scan starts there, past the dead entries. A
//! message can appear below the floor only in rare ways — a receive whose transaction
//! failed, a lock that expired while later messages were being received — so the floor is
//! dropped whenever a floored scan finds nothing and at least once a second
//! ([`FULL_SCAN_EVERY`]): such a message waits at most that long for its turn.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{PgTransport, Settings};
use crate::{LockToken, MAX_DELIVERY_REASON, ReceivedMessage};

/// How often a receive ignores the floor and scans from the head of the queue.
pub(super) const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Floor {
    visible_at: DateTime<Utc>,
    seq: i64,
    /// When the next scan must start from the head.
    full_scan_at: Instant,
}

/// Per-queue scan floors of this process.
#[derive(Debug, Default)]
pub(super) struct Floors(Mutex<HashMap<i32, Floor>>);

impl Floors {
    fn get(&self, queue_id: i32) -> Option<Floor> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&queue_id)
            .copied()
            .filter(|f| Instant::now() < f.full_scan_at)
    }

    fn set(&self, queue_id: i32, visible_at: DateTime<Utc>, seq: i64, from_head: bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let full_scan_at = match (from_head, map.get(&queue_id)) {
            (false, Some(f)) => f.full_scan_at,
            _ => Instant::now() + FULL_SCAN_EVERY,
        };
        map.insert(
            queue_id,
            Floor {
                visible_at,
                seq,
                full_scan_at,
            },
        );
    }

    fn clear(&self, queue_id: i32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&queue_id);
    }
}

/// Claims up to `$2` visible messages. `cand` locks the oldest visible rows at or above the
/// floor (`$7`, `$8`; a floor of `-infinity` scans from the head), skipping rows another
/// receiver is claiming. Rows already delivered max_delivery_count times move to the
/// dead-letter queue (`expired`, `moved`) instead of being delivered again; the others get
/// the new lock token and expiry. The two touch disjoint rows, joined on the ctid `cand`
/// locked.
const RECEIVE: &str = "
    WITH cand AS (
        SELECT ctid, visible_at, seq, delivery_count FROM offload.queue_messages
        WHERE queue_id = $1 AND visible_at <= now() AND (visible_at, seq) >= (coalesce($7, '-infinity'::timestamptz), $8)
        ORDER BY visible_at, seq
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        DELETE FROM offload.queue_messages m USING cand c
        WHERE m.ctid = c.ctid AND c.delivery_count >= $4
        RETURNING m.*
    ), moved AS (
        INSERT INTO offload.queue_dead_letters
            (seq, queue_id, message_id, body, properties, enqueued_at, delivery_count,
             reason, description)
        SELECT seq, queue_id, message_id, body, properties, enqueued_at, delivery_count,
               $6, 'delivered ' || delivery_count || ' times without being completed'
        FROM expired
    )
    UPDATE offload.queue_messages m
    SET visible_at = now() + $3 * interval '1 second', lock_token = $5,
        delivery_count = m.delivery_count + 1
    FROM cand c
    WHERE m.ctid = c.ctid AND c.delivery_count < $4
    RETURNING m.seq, m.message_id, m.body, m.properties, m.enqueued_at, m.visible_at,
              m.delivery_count, m.lock_token, c.visible_at AS was_visible_at";

#[derive(sqlx::FromRow)]
struct ReceivedRow {
    seq: i64,
    message_id: String,
    body: Vec<u8>,
    properties: Option<Json<std::collections::BTreeMap<String, String>>>,
    enqueued_at: DateTime<Utc>,
    visible_at: DateTime<Utc>,
    delivery_count: i32,
    lock_token: Uuid,
    was_visible_at: DateTime<Utc>,
}

impl From<ReceivedRow> for ReceivedMessage {
    fn from(r: ReceivedRow) -> Self {
        Self {
            lock: LockToken {
                sequence: r.seq,
                token: r.lock_token,
            },
            message_id: r.message_id,
            body: r.body.into(),
            properties: r.properties.map(|p| p.0).unwrap_or_default(),
            delivery_count: r.delivery_count.max(0) as u32,
            enqueued_at: r.enqueued_at,
            locked_until: r.visible_at,
        }
    }
}

impl PgTransport {
    /// One attempt to claim up to `max` messages, from the floor when there is one.
    pub(super) async fn try_receive(
        &self,
        s: Settings,
        max: usize,
    ) -> Result<Vec<ReceivedMessage>, sqlx::Error> {
        let floor = self.floors.get(s.id);
        let mut rows = self.claim(s, max, floor).await?;
        if rows.is_empty() && floor.is_some() {
            // Nothing at or above the floor: look from the head before saying "empty".
            self.floors.clear(s.id);
            rows = self.claim(s, max, None).await?;
        }
        if let Some(first) = rows.iter().min_by_key(|r| (r.was_visible_at, r.seq)) {
            self.floors
                .set(s.id, first.was_visible_at, first.seq, floor.is_none());
        }
        let mut msgs: Vec<ReceivedMessage> = rows.into_iter().map(Into::into).collect();
        msgs.sort_by_key(|m| m.lock.sequence);
        Ok(msgs)
    }

    async fn claim(
        &self,
        s: Settings,
        max: usize,
        floor: Option<Floor>,
    ) -> Result<Vec<ReceivedRow>, sqlx::Error> {
        // Without a floor, `(-infinity, MIN)` makes the row comparison true for every row.
        let (at, seq) = floor.map_or((None::<DateTime<Utc>>, i64::MIN), |f| {
            (Some(f.visible_at), f.seq)
        });
        sqlx::query_as(RECEIVE)
            .bind(s.id)
            .bind(max as i64)
            .bind(s.lock_secs)
            .bind(s.max_delivery_count)
            .bind(Uuid::new_v4())
            .bind(MAX_DELIVERY_REASON)
            .bind(at)
            .bind(seq)
            .fetch_all(&self.relaxed)
            .await
    }
}
