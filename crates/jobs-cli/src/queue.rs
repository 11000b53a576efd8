//! `offload queue …`: depth, dead letters, resubmission — what an operator needs when items
//! fail.

use anyhow::Context;
use clap::Subcommand;
use jobs_core::Config;
use jobs_core::queue::{PgTransport, PgTransportOptions, QueueName, Transport};

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
}

pub async fn run(cmd: QueueCommand, cfg: &Config) -> anyhow::Result<()> {
    let pool = jobs_core::db::connect(&cfg.database).await?;
    let mut options = PgTransportOptions::from_config(&cfg.queue);
    options.listen_notify = false;
    let transport = PgTransport::start(pool, options).await?;
    let name = |q: &str| QueueName::parse(q).context("queue name");
    match cmd {
        QueueCommand::Depth { queue } => {
            let d = transport.depth(&name(&queue)?).await?;
            println!(
                "{queue}: active {} (locked {}), scheduled {}, dead-lettered {}",
                d.active, d.locked, d.scheduled, d.dead_lettered
            );
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
                println!("{line}");
            }
        }
        QueueCommand::Resubmit { queue, sequences } => {
            let n = transport
                .resubmit_dead_letters(&name(&queue)?, &sequences)
                .await?;
            println!("resubmitted {n} of {} dead letters", sequences.len());
        }
    }
    Ok(())
}
