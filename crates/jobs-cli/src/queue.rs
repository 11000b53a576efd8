//! `offload queue …`: depth, dead letters, resubmission, parked messages — what an operator
//! needs when items fail. Works on the configured transport (Postgres or Service Bus).

use anyhow::Context;
use clap::Subcommand;
use jobs_core::Config;
use std::sync::Arc;

use jobs_core::config::TransportKind;
use jobs_queue::{
    ConnectionString, PgTransport, PgTransportOptions, QueueName, ServiceBusTransport, Transport,
};
use secrecy::ExposeSecret;

use crate::output::say;

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Active, locked, scheduled and dead-lettered counts.
    Depth { queue: String },
    /// List dead letters, oldest first, as JSON lines.
    DeadLetters {
        queue: String,
        /// Only dead letters after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Move dead letters back to their queue.
    Resubmit {
        queue: String,
        /// Sequence numbers, as listed by `dead-letters`.
        #[arg(required = true)]
        sequences: Vec<i64>,
    },
    /// Messages taken out of circulation into Postgres (`offload.parked_messages`) where
    /// the transport cannot keep them as dead letters (Service Bus), newest first, as JSON
    /// lines.
    Parked {
        /// Only this queue's.
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// id, queue, message id, delivery count, reason, description, parked at, body bytes.
type ParkedRow = (
    i64,
    String,
    String,
    i32,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
    i64,
);

pub async fn run(cmd: QueueCommand, cfg: &Config) -> anyhow::Result<()> {
    let (store_connections, _) = cfg.database.pool_sizes(cfg.queue.transport);
    let pool = jobs_core::db::connect_sized(&cfg.database, store_connections).await?;
    let transport: Arc<dyn Transport> = match cfg.queue.transport {
        TransportKind::Postgres => {
            let mut options = PgTransportOptions::from_config(cfg);
            options.listen_notify = false;
            Arc::new(PgTransport::start(pool.clone(), options).await?)
        }
        TransportKind::Servicebus => {
            let cs =
                ConnectionString::parse(cfg.queue.servicebus_connection_string.expose_secret())?;
            Arc::new(ServiceBusTransport::new(&cs)?)
        }
    };
    let name = |q: &str| QueueName::parse(q).context("queue name");
    match cmd {
        QueueCommand::Depth { queue } => {
            let d = transport.depth(&name(&queue)?).await?;
            say!(
                "{queue}: active {} (locked {}), scheduled {}, dead-lettered {}",
                d.active,
                d.locked,
                d.scheduled,
                d.dead_lettered
            )?;
        }
        QueueCommand::DeadLetters {
            queue,
            after,
            limit,
        } => {
            for d in transport
                .peek_dead_letters(&name(&queue)?, after, limit)
                .await?
            {
                let line = serde_json::json!({
                    "sequence": d.sequence,
                    "message_id": d.message_id,
                    "reason": d.reason,
                    "description": d.description,
                    "delivery_count": d.delivery_count,
                    "enqueued_at": d.enqueued_at,
                    "dead_lettered_at": d.dead_lettered_at,
                    "body_bytes": d.body.len(),
                });
                say!("{line}")?;
            }
        }
        QueueCommand::Resubmit { queue, sequences } => {
            let n = transport
                .resubmit_dead_letters(&name(&queue)?, &sequences)
                .await?;
            say!("resubmitted {n} of {} dead letters", sequences.len())?;
        }
        QueueCommand::Parked { queue, limit } => {
            let rows: Vec<ParkedRow> = jobs_core::sqlx::query_as(
                "SELECT id, queue, message_id, delivery_count, reason, description, parked_at,
                            octet_length(body)::bigint
                     FROM offload.parked_messages
                     WHERE $1::text IS NULL OR queue = $1
                     ORDER BY id DESC LIMIT $2",
            )
            .bind(queue)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            for (id, queue, message_id, deliveries, reason, description, at, bytes) in rows {
                let line = serde_json::json!({
                    "id": id, "queue": queue, "message_id": message_id,
                    "delivery_count": deliveries, "reason": reason,
                    "description": description, "parked_at": at, "body_bytes": bytes,
                });
                say!("{line}")?;
            }
        }
    }
    Ok(())
}
