//! Keeping the queue tables small: vacuuming them when they hold many dead rows, and purging
//! expired duplicate-detection history.
//!
//! Every receive leaves a dead row version and every completion a dead row, thousands per
//! second under load. Autovacuum handles that when it is on (the tables carry aggressive
//! per-table autovacuum settings), but it may be off or slow — it is off on the machines
//! this was built on — and then the tables and their indexes grow without bound and every
//! scan slows down. So the transport watches the dead-row count itself and runs `VACUUM` on
//! a table once it passes a threshold. One process at a time does it (a session advisory
//! lock); a vacuum never blocks senders or receivers.

use std::time::{Duration, Instant};

use sqlx::{Executor, PgPool};
use tokio_util::sync::CancellationToken;

/// How often expired duplicate-detection history is purged.
const PURGE_EVERY: Duration = Duration::from_secs(30);
/// Advisory lock keys (arbitrary constants, "offload" in their digits).
const VACUUM_LOCK: i64 = 0x0ff1_0ad0_0001;
const PURGE_LOCK: i64 = 0x0ff1_0ad0_0002;
const TABLES: [&str; 3] = ["queue_messages", "queue_dedupe", "queue_dead_letters"];

#[derive(Clone, Copy, Debug)]
pub(super) struct Maintenance {
    pub interval: Duration,
    /// Vacuum a queue table once it holds this many dead rows; 0 leaves it to autovacuum.
    pub vacuum_dead_rows: i64,
}

pub(super) fn spawn(pool: PgPool, m: Maintenance, stop: CancellationToken) {
    let shutdown = stop.clone();
    jobs_core::supervise::spawn_supervised("queue maintenance", shutdown, move || {
        run_until_stopped(pool.clone(), m, stop.clone())
    });
}

async fn run_until_stopped(pool: PgPool, m: Maintenance, stop: CancellationToken) {
    let mut tick = tokio::time::interval(m.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_purge = Instant::now() + PURGE_EVERY;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if Instant::now() >= next_purge {
            next_purge = Instant::now() + PURGE_EVERY;
            match purge_expired_dedupe(&pool).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(purged = n, "purged expired duplicate-detection history")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging duplicate-detection history failed")
                }
            }
        }
        if m.vacuum_dead_rows > 0
            && let Err(e) = vacuum_if_needed(&pool, m.vacuum_dead_rows).await
        {
            tracing::warn!(error = %e, "vacuuming the queue tables failed");
        }
    }
}

/// Vacuums each queue table holding at least `threshold` dead rows. Returns the tables
/// vacuumed.
pub async fn vacuum_if_needed(pool: &PgPool, threshold: i64) -> Result<Vec<String>, sqlx::Error> {
    let dead: Vec<(String, i64)> = sqlx::query_as(
        "SELECT relname::text, n_dead_tup FROM pg_stat_user_tables
         WHERE schemaname = 'offload' AND relname = ANY($1) AND n_dead_tup >= $2",
    )
    .bind(&TABLES[..])
    .bind(threshold)
    .fetch_all(pool)
    .await?;
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(VACUUM_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    let mut result = Ok(());
    for (table, rows) in dead {
        let started = Instant::now();
        // The table name comes from the constant list above, never from input.
        if let Err(e) = conn
            .execute(format!("VACUUM offload.{table}").as_str())
            .await
        {
            result = Err(e);
            break;
        }
        tracing::debug!(
            table,
            dead_rows = rows,
            took_ms = started.elapsed().as_millis() as u64,
            "vacuumed"
        );
        done.push(table);
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(VACUUM_LOCK)
        .execute(&mut *conn)
        .await?;
    result.map(|()| done)
}

/// Deletes expired duplicate-detection rows, 5,000 at a time; returns how many.
pub async fn purge_expired_dedupe(pool: &PgPool) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 5_000;
    let mut purged = 0;
    loop {
        let mut tx = pool.begin().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !got {
            return Ok(purged);
        }
        let n = sqlx::query(
            "DELETE FROM offload.queue_dedupe WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM offload.queue_dedupe WHERE expires_at <= now() LIMIT $1))",
        )
        .bind(BATCH)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        purged += n;
        if n < BATCH as u64 {
            return Ok(purged);
        }
    }
}
