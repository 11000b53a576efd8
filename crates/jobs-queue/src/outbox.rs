//! Messages that must leave with a database transaction.
//!
//! `POST /v1/jobs` writes the job row and its first message together, so a job is never
//! accepted without being planned. The Postgres transport joins the caller's transaction
//! directly. Any other transport (Service Bus) cannot, so the message goes into
//! `offload.outbox` in that transaction and a relay sends it to the broker after the commit:
//! at once when the process that wrote it is alive, otherwise when any relay polls. A broker
//! outage delays messages but cannot lose them; a relay that dies between sending and
//! deleting sends again, and duplicate detection drops the repeat (message ids are
//! deterministic).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{OutgoingMessage, PgTransport, QueueError, QueueName, Transport};
use jobs_core::process::backoff;

/// Rows relayed per transaction.
const RELAY_BATCH: i64 = 500;
/// How often an idle relay looks for rows that other processes left behind.
const RELAY_POLL: Duration = Duration::from_secs(1);

async fn park_undeliverable(
    tx: &mut PgConnection,
    queue: &QueueName,
    m: &OutgoingMessage,
    why: &QueueError,
) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO offload.parked_messages
             (queue, message_id, body, properties, delivery_count, reason, description)
         VALUES ($1, $2, $3, $4, 0, 'OutboxUndeliverable', $5)",
    )
    .bind(queue.as_str())
    .bind(&m.message_id)
    .bind(m.body.as_ref())
    .bind(Json(&m.properties))
    .bind(why.to_string())
    .execute(tx)
    .await?;
    Ok(())
}

/// An outbox row: id, queue, message id, body, properties.
type Row = (i64, String, String, Vec<u8>, Json<BTreeMap<String, String>>);

/// How to send messages inside a caller's transaction.
#[derive(Clone, Debug)]
pub enum TxSender {
    /// The Postgres transport: the messages are written in the transaction itself.
    Postgres(Arc<PgTransport>),
    /// Any other transport: through the outbox.
    Outbox(Outbox),
}

impl TxSender {
    /// Writes `messages` as part of the transaction on `conn`; they are sent if and only if
    /// it commits. Call [`TxSender::committed`] after the commit.
    pub async fn send_in(
        &self,
        conn: &mut PgConnection,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<(), QueueError> {
        match self {
            Self::Postgres(t) => t.send_in(conn, queue, messages).await.map(drop),
            Self::Outbox(o) => o.write(conn, queue, messages).await,
        }
    }

    /// Tells the relay that rows are waiting (nothing to do for Postgres).
    pub fn committed(&self) {
        if let Self::Outbox(o) = self {
            o.wake();
        }
    }
}

/// The outbox table and its relay to a transport.
#[derive(Clone, Debug)]
pub struct Outbox {
    pool: PgPool,
    transport: Arc<dyn Transport>,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(pool: PgPool, transport: Arc<dyn Transport>) -> Self {
        Self {
            pool,
            transport,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Writes `messages` to the outbox in the transaction on `conn`.
    pub async fn write(
        &self,
        conn: &mut PgConnection,
        queue: &QueueName,
        messages: &[OutgoingMessage],
    ) -> Result<(), QueueError> {
        for m in messages {
            m.validate()?;
            if m.scheduled_at.is_some() {
                return Err(QueueError::InvalidMessage {
                    message_id: m.message_id.clone(),
                    problem: "scheduled messages cannot go through the outbox".into(),
                });
            }
        }
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_ref()).collect();
        let props: Vec<Json<&BTreeMap<String, String>>> =
            messages.iter().map(|m| Json(&m.properties)).collect();
        sqlx::query(
            "INSERT INTO offload.outbox (queue, message_id, body, properties)
             SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::jsonb[])",
        )
        .bind(queue.as_str())
        .bind(&ids)
        .bind(&bodies)
        .bind(&props)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Messages written and not yet relayed.
    pub async fn pending(&self) -> Result<i64, QueueError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM offload.outbox")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Relays one batch of rows, oldest first; returns how many were sent. Rows another
    /// relay is sending are skipped; a failed send leaves every row of the batch in place.
    pub async fn relay_once(&self) -> Result<usize, QueueError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, queue, message_id, body, properties FROM offload.outbox
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(RELAY_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Consecutive rows of one queue go as one send, keeping their order.
        let mut start = 0;
        while start < rows.len() {
            let queue = &rows[start].1;
            let end = rows[start..]
                .iter()
                .position(|r| &r.1 != queue)
                .map_or(rows.len(), |n| start + n);
            let name = QueueName::parse(queue).map_err(|e| QueueError::InvalidMessage {
                message_id: rows[start].2.clone(),
                problem: e.to_string(),
            })?;
            let messages: Vec<_> = rows[start..end]
                .iter()
                .map(|(_, _, id, body, props)| {
                    let mut m = OutgoingMessage::new(id.clone(), body.clone());
                    m.properties = props.0.clone();
                    m
                })
                .collect();
            match self.transport.send(&name, &messages).await {
                Ok(_) => {}
                // A message the broker will never take must not hold up every later one:
                // it is parked with the reason and the rest go on.
                Err(e @ (QueueError::InvalidMessage { .. } | QueueError::UnknownQueue(_))) => {
                    tracing::error!(queue = %name, error = %e, "parking undeliverable outbox messages");
                    for m in &messages {
                        park_undeliverable(&mut tx, &name, m, &e).await?;
                    }
                }
                Err(e) => return Err(e),
            }
            start = end;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM offload.outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Relays until `shutdown`: when woken after a commit, and every second for rows left
    /// by other processes. A failing broker pauses the relay with a growing back-off.
    pub async fn relay_until_stopped(self, shutdown: CancellationToken) {
        let stop = shutdown.clone();
        jobs_core::supervise::supervise(
            "outbox relay",
            &jobs_core::supervise::Liveness::process(),
            &stop,
            move || self.clone().relay_loop(shutdown.clone()),
        )
        .await;
    }

    async fn relay_loop(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            match self.relay_once().await {
                Ok(n) if n as i64 == RELAY_BATCH => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let pause = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                    );
                    tracing::warn!(error = %e, ?pause, "relaying the outbox failed; messages wait in Postgres");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(RELAY_POLL) => {}
            }
        }
    }
}
