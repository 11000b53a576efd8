//! The Postgres transport: the embedded default, needing nothing but the Postgres the job
//! store already uses.
//!
//! Tables (see `migrations/*_queue.sql`): `queues` (settings), `queue_messages` (the hot
//! table: only active, scheduled and locked messages), `queue_dedupe` (duplicate detection
//! history) and `queue_dead_letters`. Receivers claim with `FOR UPDATE SKIP LOCKED`, so
//! concurrent receivers never get the same message while it is locked; completion deletes
//! the row, so the hot table holds the backlog and nothing else.
//!
//! ## Settling goes through the lock index
//!
//! Complete, abandon, dead-letter and renew find the message by `(lock_token, seq)` through
//! the partial lock index. Their other conditions are written so that the receive index
//! `(queue_id, visible_at, seq)` cannot serve them — `queue_id + 0 = $1` and
//! `visible_at - now() > interval '0'` instead of `queue_id = $1` and `visible_at > now()`.
//! Otherwise the planner may pick the receive index (its statistics can make either
//! condition look selective) and walk every entry of the queue, or every dead entry left by
//! messages locked and completed since the last vacuum: tens of milliseconds per settle on
//! a large backlog instead of a few microseconds.
//!
//! ## Which commits must be durable
//!
//! Sends are committed durably (the server's `synchronous_commit`, `on` by default): once
//! `send` returns, the message survives a crash — nothing else could bring it back.
//!
//! Everything a receiver does — receive (lock), complete, abandon, dead-letter, renew — runs
//! on a second pool whose sessions set `synchronous_commit = off`. Postgres then returns
//! from COMMIT before the WAL flush; a crash can lose the last few hundred milliseconds of
//! such commits, but only as a whole suffix of the log, never a torn one. Losing any of them
//! is indistinguishable from something at-least-once delivery already allows:
//! - a lost receive is a lock that vanished: the message is receivable again, as after a
//!   lock expiry;
//! - a lost complete brings the message back: a redelivery, which every handler must
//!   tolerate anyway (outputs at deterministic paths, the job store counts an item once);
//! - a lost abandon or renew leaves the lock to expire at its old time; the holder's next
//!   settle fails with `LockLost` and the message is delivered again;
//! - a lost dead-letter leaves the message in the queue, to be delivered or dead-lettered
//!   again.
//!
//! No message is ever lost or duplicated in the store by this, because the effect of
//! processing (the job store's item completion) is committed durably *before* the message is
//! completed. The gain is large: the per-message path is bound by WAL flushes otherwise.

mod maintenance;
mod receive;
mod send;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

pub use maintenance::{purge_expired_dedupe, vacuum_if_needed};
use wake::{CHANNEL, Wakers};

use super::{
    DeadLetter, LockToken, MAX_DELIVERY_REASON, OutgoingMessage, QueueDepth, QueueError, QueueName,
    QueueSpec, ReceivedMessage, SendReport, Transport,
};

/// How the transport finds new messages and keeps itself tidy.
#[derive(Clone, Debug)]
pub struct PgTransportOptions {
    /// Wake receivers with LISTEN/NOTIFY (off behind PgBouncer in transaction mode).
    pub listen_notify: bool,
    /// How often a waiting receiver looks again without a notification.
    pub poll_interval: Duration,
    /// How often the maintenance task looks at the queue tables.
    pub maintenance_interval: Duration,
    /// Vacuum a queue table once it holds this many dead rows (0: leave it to autovacuum).
    pub vacuum_dead_rows: i64,
    /// Connections of the receivers' relaxed-commit pool.
    pub receiver_connections: u32,
}

impl PgTransportOptions {
    pub fn from_config(cfg: &jobs_core::config::Config) -> Self {
        let q = &cfg.queue;
        Self {
            listen_notify: q.listen_notify,
            poll_interval: q.poll_interval(),
            maintenance_interval: q.maintenance_interval(),
            vacuum_dead_rows: q.vacuum_dead_rows as i64,
            receiver_connections: cfg
                .database
                .pool_sizes(jobs_core::config::TransportKind::Postgres)
                .1,
        }
    }
}

/// Settings of one queue as the SQL needs them.
#[derive(Clone, Copy, Debug)]
struct Settings {
    /// `queues.id`, by which the hot tables refer to the queue.
    id: i32,
    lock_secs: f64,
    max_delivery_count: i32,
    dedupe_secs: f64,
}

#[derive(Debug)]
pub struct PgTransport {
    /// Sends and operator actions: durable commits.
    durable: PgPool,
    /// Receiver operations: `synchronous_commit = off` (see the module docs for why).
    relaxed: PgPool,
    options: PgTransportOptions,
    /// Queue settings by name, loaded on first use. Settings changed by another process
    /// are seen after this process restarts.
    settings: RwLock<HashMap<String, Settings>>,
    /// Where this process's next receive scan starts, per queue (see `receive`).
    floors: receive::Floors,
    wakers: Arc<Wakers>,
    /// Stops the listener and maintenance tasks when the transport is dropped.
    _stop: DropGuard,
}

impl PgTransport {
    /// Starts the transport on `pool`: opens the relaxed-commit pool beside it (of
    /// `options.receiver_connections`), connects
    /// the listener (when enabled) and starts maintenance. Needs a Tokio runtime.
    pub async fn start(pool: PgPool, options: PgTransportOptions) -> Result<Self, QueueError> {
        // Receiver sessions: relaxed commits (see the module docs), and generic plans. The
        // receive statement's custom plans estimate a handful of rows and its generic plan
        // thousands, so Postgres would re-plan it on every execution (~0.3 ms, more than
        // executing it); the plan shape is the same either way (index scan + TID scans).
        let connect = (*pool.connect_options()).clone().options([
            ("synchronous_commit", "off"),
            ("plan_cache_mode", "force_generic_plan"),
        ]);
        let relaxed = PgPoolOptions::new()
            .max_connections(options.receiver_connections.max(1))
            .acquire_timeout(pool.options().get_acquire_timeout())
            // A dead connection shows as a failed statement, which callers retry anyway;
            // a ping before each statement would double the round trips.
            .test_before_acquire(false)
            .connect_lazy_with(connect);
        let stop = CancellationToken::new();
        let wakers = Arc::new(Wakers::default());
        if options.listen_notify {
            wake::spawn_listener(&pool, wakers.clone(), stop.clone()).await?;
        }
        let m = maintenance::Maintenance {
            interval: options.maintenance_interval,
            vacuum_dead_rows: options.vacuum_dead_rows,
        };
        maintenance::spawn(pool.clone(), m, stop.clone());
        Ok(Self {
            durable: pool,
            relaxed,
            options,
            settings: RwLock::new(HashMap::new()),
            floors: receive::Floors::default(),
            wakers,
            _stop: stop.drop_guard(),
        })
    }

    async fn settings(&self, queue: &QueueName) -> Result<Settings, QueueError> {
        if let Some(s) = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue.as_str())
        {
            return Ok(*s);
        }
        let row: Option<(i32, f64, i32, f64)> = sqlx::query_as(
            "SELECT id, extract(epoch FROM lock_duration)::float8, max_delivery_count,
                    extract(epoch FROM dedupe_window)::float8
             FROM offload.queues WHERE name = $1",
        )
        .bind(queue.as_str())
        .fetch_optional(&self.durable)
        .await?;
        let (id, lock_secs, max_delivery_count, dedupe_secs) =
            row.ok_or_else(|| QueueError::UnknownQueue(queue.clone()))?;
        let s = Settings {
            id,
            lock_secs,
            max_delivery_count,
            dedupe_secs,
        };
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.as_str().to_owned(), s);
        Ok(s)
    }

    /// Abandon and dead-letter share one statement: release the lock (with a delay) or,
    /// when `reason` is given or the delivery count is exhausted, move to the dead-letter
    /// queue. Fails with `LockLost` when the caller no longer held the lock.
    async fn release(
        &self,
        queue: &QueueName,
        lock: &LockToken,
        delay: Duration,
        dead_letter: Option<(&str, &str)>,
    ) -> Result<(), QueueError> {
        let s = self.settings(queue).await?;
        let (reason, description) = match dead_letter {
            Some((r, d)) => (Some(r), Some(d)),
            None => (None, None),
        };
        let held: i64 = sqlx::query_scalar(
            "WITH target AS (
                SELECT ctid, delivery_count FROM offload.queue_messages
                WHERE lock_token = $3 AND seq = $2 AND queue_id + 0 = $1 AND visible_at - now() > interval '0'
                FOR UPDATE
             ), dead AS (
                DELETE FROM offload.queue_messages m USING target t
                WHERE m.ctid = t.ctid AND ($5::text IS NOT NULL OR t.delivery_count >= $6)
                RETURNING m.*
             ), moved AS (
                INSERT INTO offload.queue_dead_letters
                    (seq, queue_id, message_id, body, properties, enqueued_at, delivery_count,
                     reason, description)
                SELECT seq, queue_id, message_id, body, properties, enqueued_at, delivery_count,
                       coalesce($5, $8),
                       coalesce($7, 'delivered ' || delivery_count || ' times without being completed')
                FROM dead
             ), released AS (
                UPDATE offload.queue_messages m
                SET lock_token = NULL, visible_at = now() + $4 * interval '1 second'
                FROM target t
                WHERE m.ctid = t.ctid AND $5::text IS NULL AND t.delivery_count < $6
             )
             SELECT count(*) FROM target",
        )
        .bind(s.id)
        .bind(lock.sequence)
        .bind(lock.token)
        .bind(delay.as_secs_f64())
        .bind(reason)
        .bind(s.max_delivery_count)
        .bind(description)
        .bind(MAX_DELIVERY_REASON)
        .fetch_one(&self.relaxed)
        .await?;
        if held == 0 {
            return Err(QueueError::LockLost {
                sequence: lock.sequence,
            });
        }
        if delay.is_zero() && dead_letter.is_none() {
            self.notify(queue).await?;
        }
        Ok(())
    }

    async fn notify(&self, queue: &QueueName) -> Result<(), QueueError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(queue.as_str())
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    seq: i64,
    message_id: String,
    body: Vec<u8>,
    properties: Option<Json<BTreeMap<String, String>>>,
    enqueued_at: DateTime<Utc>,
    delivery_count: i32,
    reason: String,
    description: Option<String>,
    dead_lettered_at: DateTime<Utc>,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(r: DeadLetterRow) -> Self {
        Self {
            sequence: r.seq,
            message_id: r.message_id,
            body: r.body.into(),
            properties: r.properties.map(|p| p.0).unwrap_or_default(),
            delivery_count: r.delivery_count.max(0) as u32,
            enqueued_at: r.enqueued_at,
            reason: r.reason,
            description: r.description,
            dead_lettered_at: r.dead_lettered_at,
        }
    }
}

const DEAD_LETTER_COLUMNS: &str = "seq, message_id, body, properties, enqueued_at, \
     delivery_count, reason, description, dead_lettered_at";

#[async_trait]
impl Transport for PgTransport {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let invalid = |problem: &str| {
            Err(QueueError::InvalidSpec {
                queue: spec.name.clone(),
                problem: problem.into(),
            })
        };
        if spec.lock_duration < Duration::from_millis(100) {
            return invalid("lock duration must be at least 100 ms");
        }
        if spec.max_delivery_count == 0 || spec.max_delivery_count > i32::MAX as u32 {
            return invalid("max delivery count must be at least 1");
        }
        let mut s = Settings {
            id: 0,
            lock_secs: spec.lock_duration.as_secs_f64(),
            max_delivery_count: spec.max_delivery_count as i32,
            dedupe_secs: spec.dedupe_window.as_secs_f64(),
        };
        s.id = sqlx::query_scalar(
            "INSERT INTO offload.queues (name, lock_duration, max_delivery_count, dedupe_window)
             VALUES ($1, $2 * interval '1 second', $3, $4 * interval '1 second')
             ON CONFLICT (name) DO UPDATE SET lock_duration = EXCLUDED.lock_duration,
                 max_delivery_count = EXCLUDED.max_delivery_count,
                 dedupe_window = EXCLUDED.dedupe_window
             RETURNING id",
        )
        .bind(spec.name.as_str())
        .bind(s.lock_secs)
        .bind(s.max_delivery_count)
        .bind(s.dedupe_secs)
        .fetch_one(&self.durable)
        .await?;
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.name.as_str().to_owned(), s);
        Ok(())
    }

    async fn send(
        &self,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<SendReport, QueueError> {
        let mut conn = self.durable.acquire().await?;
        self.send_on(&mut conn, queue, messages, true).await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_until(queue, max, wait, &CancellationToken::new())
            .await
    }

    /// Waiting (for a notification or the next poll) stops at `stop`; a claim under way
    /// runs to its end, so its messages reach the caller.
    async fn receive_until(
        &self,
        queue: &QueueName,
        max: usize,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let s = self.settings(queue).await?;
        let max = max.clamp(1, 5_000);
        let deadline = tokio::time::Instant::now() + wait;
        let waker = self.wakers.for_queue(queue.as_str());
        loop {
            // Register for a wake-up *before* looking, so a notification that arrives
            // between an empty claim and the wait is not missed.
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let msgs = self.try_receive(s, max).await?;
            let now = tokio::time::Instant::now();
            if !msgs.is_empty() || now >= deadline || stop.is_cancelled() {
                return Ok(msgs);
            }
            let nap = self.options.poll_interval.min(deadline - now);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
                () = stop.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    async fn complete(&self, queue: &QueueName, lock: &LockToken) -> Result<(), QueueError> {
        let s = self.settings(queue).await?;
        let n = sqlx::query(
            "DELETE FROM offload.queue_messages
             WHERE lock_token = $3 AND seq = $2 AND queue_id + 0 = $1 AND visible_at - now() > interval '0'",
        )
        .bind(s.id)
        .bind(lock.sequence)
        .bind(lock.token)
        .execute(&self.relaxed)
        .await?
        .rows_affected();
        if n == 0 {
            Err(QueueError::LockLost {
                sequence: lock.sequence,
            })
        } else {
            Ok(())
        }
    }

    async fn complete_batch(
        &self,
        queue: &QueueName,
        locks: &[LockToken],
    ) -> Result<Vec<LockToken>, QueueError> {
        if locks.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.settings(queue).await?;
        let seqs: Vec<i64> = locks.iter().map(|l| l.sequence).collect();
        let tokens: Vec<Uuid> = locks.iter().map(|l| l.token).collect();
        let mut distinct_tokens = tokens.clone();
        distinct_tokens.sort_unstable();
        distinct_tokens.dedup();
        let done: Vec<i64> = sqlx::query_scalar(
            // One receive's messages share a token: find them through the lock index by
            // the distinct tokens, then keep exactly the (seq, token) pairs presented.
            "DELETE FROM offload.queue_messages m
             WHERE m.lock_token = ANY($4) AND m.seq = ANY($2) AND (m.seq, m.lock_token) IN (
                   SELECT * FROM unnest($2::bigint[], $3::uuid[]))
               AND m.queue_id + 0 = $1 AND m.visible_at - now() > interval '0'
             RETURNING m.seq",
        )
        .bind(s.id)
        .bind(&seqs)
        .bind(&tokens)
        .bind(&distinct_tokens)
        .fetch_all(&self.relaxed)
        .await?;
        if done.len() == locks.len() {
            return Ok(Vec::new());
        }
        let done: std::collections::HashSet<i64> = done.into_iter().collect();
        Ok(locks
            .iter()
            .filter(|l| !done.contains(&l.sequence))
            .copied()
            .collect())
    }

    async fn abandon(
        &self,
        queue: &QueueName,
        lock: &LockToken,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.release(queue, lock, delay.min(super::MAX_DELAY), None)
            .await
    }

    async fn dead_letter(
        &self,
        queue: &QueueName,
        lock: &LockToken,
        reason: &str,
        description: &str,
    ) -> Result<(), QueueError> {
        self.release(queue, lock, Duration::ZERO, Some((reason, description)))
            .await
    }

    async fn renew_lock(
        &self,
        queue: &QueueName,
        lock: &LockToken,
    ) -> Result<DateTime<Utc>, QueueError> {
        let s = self.settings(queue).await?;
        let until: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE offload.queue_messages SET visible_at = now() + $4 * interval '1 second'
             WHERE lock_token = $3 AND seq = $2 AND queue_id + 0 = $1 AND visible_at - now() > interval '0'
             RETURNING visible_at",
        )
        .bind(s.id)
        .bind(lock.sequence)
        .bind(lock.token)
        .bind(s.lock_secs)
        .fetch_optional(&self.relaxed)
        .await?;
        until.ok_or(QueueError::LockLost {
            sequence: lock.sequence,
        })
    }

    async fn peek_dead_letters(
        &self,
        queue: &QueueName,
        after: Option<i64>,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let s = self.settings(queue).await?;
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM offload.queue_dead_letters
             WHERE queue_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(s.id)
        .bind(after.unwrap_or(i64::MIN))
        .bind(max.clamp(1, 5_000) as i64)
        .fetch_all(&self.durable)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let s = self.settings(queue).await?;
        let mut rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "DELETE FROM offload.queue_dead_letters WHERE seq IN (
                 SELECT seq FROM offload.queue_dead_letters WHERE queue_id = $1
                 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {DEAD_LETTER_COLUMNS}"
        ))
        .bind(s.id)
        .bind(max.clamp(1, 5_000) as i64)
        .fetch_all(&self.durable)
        .await?;
        rows.sort_by_key(|r| r.seq);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn resubmit_dead_letters(
        &self,
        queue: &QueueName,
        sequences: &[i64],
    ) -> Result<usize, QueueError> {
        let s = self.settings(queue).await?;
        let n: i64 = sqlx::query_scalar(
            "WITH moved AS (
                DELETE FROM offload.queue_dead_letters WHERE queue_id = $1 AND seq = ANY($2)
                RETURNING seq, queue_id, message_id, body, properties, enqueued_at
             ), back AS (
                INSERT INTO offload.queue_messages
                    (seq, queue_id, message_id, body, properties, enqueued_at, visible_at)
                OVERRIDING SYSTEM VALUE
                SELECT seq, queue_id, message_id, body, properties, enqueued_at, now() FROM moved
                RETURNING 1
             )
             SELECT count(*) FROM back",
        )
        .bind(s.id)
        .bind(sequences)
        .fetch_one(&self.durable)
        .await?;
        if n > 0 {
            self.notify(queue).await?;
        }
        Ok(n as usize)
    }

    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth, QueueError> {
        let s = self.settings(queue).await?;
        let (active, locked, scheduled, dead): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE visible_at <= now() OR lock_token IS NOT NULL),
                    count(*) FILTER (WHERE visible_at > now() AND lock_token IS NOT NULL),
                    count(*) FILTER (WHERE visible_at > now() AND lock_token IS NULL),
                    (SELECT count(*) FROM offload.queue_dead_letters WHERE queue_id = $1)
             FROM offload.queue_messages WHERE queue_id = $1",
        )
        .bind(s.id)
        .fetch_one(&self.durable)
        .await?;
        Ok(QueueDepth {
            active: active as u64,
            locked: locked as u64,
            scheduled: scheduled as u64,
            dead_lettered: dead as u64,
        })
    }
}
