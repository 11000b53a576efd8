//! Sending: one statement per batch, committed durably.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::wake::CHANNEL;
use super::{PgTransport, Settings};
use crate::{OutgoingMessage, QueueError, QueueName, SendReport};

/// Without duplicate detection: insert the batch in order.
const SEND_PLAIN: &str = "
    WITH sent AS (
        INSERT INTO offload.queue_messages (queue_id, message_id, body, properties, visible_at)
        SELECT $1, message_id, body, properties, coalesce(visible_at, now())
        FROM unnest($2::text[], $3::bytea[], $4::jsonb[], $5::timestamptz[])
             WITH ORDINALITY AS t(message_id, body, properties, visible_at, ord)
        ORDER BY ord
        RETURNING 1
    )
    SELECT n, CASE WHEN n > 0 THEN pg_notify($6, $7) END IS NULL
    FROM (SELECT count(*) AS n FROM sent) s";

/// Duplicate detection, optimistic: a plain insert of every id's hash into the history.
/// When no id of the batch was seen before — the common case — this is the cheapest way to
/// record them (no speculative insertion). Any id already present, even an expired entry not
/// yet purged, fails the statement with a unique violation; nothing is written and the
/// batch is retried with [`SEND_DEDUPE_UPSERT`].
const SEND_DEDUPE_FAST: &str = "
    WITH input AS (
        SELECT * FROM unnest($2::text[], $3::bytea[], $4::jsonb[], $5::timestamptz[], $8::uuid[])
             WITH ORDINALITY AS t(message_id, body, properties, visible_at, id_hash, ord)
    ), fresh AS (
        INSERT INTO offload.queue_dedupe (queue_id, id_hash, expires_at)
        SELECT $1, id_hash, now() + $9 * interval '1 second' FROM input ORDER BY id_hash
    ), sent AS (
        INSERT INTO offload.queue_messages (queue_id, message_id, body, properties, visible_at)
        SELECT $1, message_id, body, properties, coalesce(visible_at, now())
        FROM input ORDER BY ord
        RETURNING 1
    )
    SELECT n, CASE WHEN n > 0 THEN pg_notify($6, $7) END IS NULL
    FROM (SELECT count(*) AS n FROM sent) s";

/// Duplicate detection, exact: record each hash unless an unexpired entry exists, and insert
/// only the messages whose hash was fresh. Hashes are inserted in sorted order, so two
/// senders racing on the same ids lock them in the same order and cannot deadlock.
const SEND_DEDUPE_UPSERT: &str = "
    WITH input AS (
        SELECT * FROM unnest($2::text[], $3::bytea[], $4::jsonb[], $5::timestamptz[], $8::uuid[])
             WITH ORDINALITY AS t(message_id, body, properties, visible_at, id_hash, ord)
    ), fresh AS (
        INSERT INTO offload.queue_dedupe AS d (queue_id, id_hash, expires_at)
        SELECT $1, id_hash, now() + $9 * interval '1 second' FROM input ORDER BY id_hash
        ON CONFLICT (queue_id, id_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE d.expires_at <= now()
        RETURNING id_hash
    ), sent AS (
        INSERT INTO offload.queue_messages (queue_id, message_id, body, properties, visible_at)
        SELECT $1, i.message_id, i.body, i.properties, coalesce(i.visible_at, now())
        FROM input i JOIN fresh f USING (id_hash)
        ORDER BY i.ord
        RETURNING 1
    )
    SELECT n, CASE WHEN n > 0 THEN pg_notify($6, $7) END IS NULL
    FROM (SELECT count(*) AS n FROM sent) s";

/// The duplicate-detection key of a message id: its SHA-256, cut to 128 bits.
fn id_hash(message_id: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(message_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23505")
}

/// A batch as column arrays, ready to bind.
struct Columns<'a> {
    ids: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    props: Vec<Option<Json<&'a BTreeMap<String, String>>>>,
    at: Vec<Option<DateTime<Utc>>>,
    hashes: Vec<Uuid>,
}

impl<'a> Columns<'a> {
    /// With duplicate detection, repeats inside the batch are dropped here (keeping the
    /// first occurrence) so that one statement never meets a key twice.
    fn new(messages: &'a [OutgoingMessage], dedupe: bool) -> Self {
        let mut seen = HashSet::with_capacity(if dedupe { messages.len() } else { 0 });
        let mut c = Columns {
            ids: Vec::with_capacity(messages.len()),
            bodies: Vec::with_capacity(messages.len()),
            props: Vec::with_capacity(messages.len()),
            at: Vec::with_capacity(messages.len()),
            hashes: Vec::new(),
        };
        for m in messages {
            if dedupe {
                let h = id_hash(&m.message_id);
                if !seen.insert(h) {
                    continue;
                }
                c.hashes.push(h);
            }
            c.ids.push(&m.message_id);
            c.bodies.push(&m.body);
            c.props
                .push((!m.properties.is_empty()).then_some(Json(&m.properties)));
            c.at.push(m.scheduled_at);
        }
        c
    }

    async fn run(
        &self,
        conn: &mut PgConnection,
        sql: &'static str,
        queue: &QueueName,
        s: Settings,
    ) -> Result<usize, sqlx::Error> {
        let mut q = sqlx::query_as::<_, (i64, bool)>(sql)
            .bind(s.id)
            .bind(&self.ids)
            .bind(&self.bodies)
            .bind(&self.props)
            .bind(&self.at)
            .bind(CHANNEL)
            .bind(queue.as_str());
        if sql != SEND_PLAIN {
            q = q.bind(&self.hashes).bind(s.dedupe_secs);
        }
        let (accepted, _) = q.fetch_one(&mut *conn).await?;
        Ok(accepted as usize)
    }
}

impl PgTransport {
    /// Sends on the caller's connection, inside the caller's transaction, so a message can
    /// be written atomically with the job row it belongs to (the API's submit path).
    pub async fn send_in(
        &self,
        conn: &mut PgConnection,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<SendReport, QueueError> {
        self.send_on(conn, queue, messages, false).await
    }

    /// `autocommit`: the connection is not inside a transaction, so a statement that fails
    /// leaves nothing behind and the optimistic duplicate-detection path can be tried
    /// first. Inside a caller's transaction a failed statement would abort the transaction,
    /// so the exact path is used directly.
    pub(super) async fn send_on(
        &self,
        conn: &mut PgConnection,
        queue: &QueueName,
        messages: &[OutgoingMessage],
        autocommit: bool,
    ) -> Result<SendReport, QueueError> {
        for m in messages {
            m.validate()?;
        }
        if messages.is_empty() {
            return Ok(SendReport::default());
        }
        let s = self.settings(queue).await?;
        let dedupe = s.dedupe_secs > 0.0;
        let cols = Columns::new(messages, dedupe);
        let accepted = if !dedupe {
            cols.run(conn, SEND_PLAIN, queue, s).await?
        } else if autocommit {
            match cols.run(conn, SEND_DEDUPE_FAST, queue, s).await {
                Err(e) if is_unique_violation(&e) => {
                    cols.run(conn, SEND_DEDUPE_UPSERT, queue, s).await?
                }
                other => other?,
            }
        } else {
            cols.run(conn, SEND_DEDUPE_UPSERT, queue, s).await?
        };
        Ok(SendReport {
            accepted,
            duplicates: messages.len() - accepted,
        })
    }
}
