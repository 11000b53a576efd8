//! `offload demo`: the whole pipeline on a demo dataset, on the configured Postgres.
//!
//! Creates the database if missing, applies migrations, creates `offload_demo.expenses`
//! (1,000,000 rows by default, with quotes, commas, newlines, unicode and NULLs in it),
//! starts all services in this process, exports the dataset through the API, and prints
//! where the file is, its rows and bytes, and the throughput.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use jobs_core::Config;
use jobs_queue::runtime::Runtime;
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::output::{note, say};
use crate::services::Services;

/// Creates (or re-creates, when its size differs) the demo table with `rows` rows.
pub async fn ensure_demo_table(pool: &jobs_core::sqlx::PgPool, rows: u64) -> anyhow::Result<()> {
    let exists: bool =
        jobs_core::sqlx::query_scalar("SELECT to_regclass('offload_demo.expenses') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    let existing: Option<i64> = if exists {
        Some(
            jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload_demo.expenses")
                .fetch_one(pool)
                .await?,
        )
    } else {
        None
    };
    if existing == Some(rows as i64) {
        return Ok(());
    }
    note!("creating offload_demo.expenses with {rows} rows …");
    let mut tx = pool.begin().await?;
    for stmt in [
        "CREATE SCHEMA IF NOT EXISTS offload_demo",
        "DROP TABLE IF EXISTS offload_demo.expenses",
        "CREATE TABLE offload_demo.expenses (
             id          bigint PRIMARY KEY,
             employee    text NOT NULL,
             cost_center text NOT NULL,
             amount      numeric(12,2) NOT NULL,
             currency    text NOT NULL,
             status      text NOT NULL,
             approved_at timestamptz,
             note        text)",
    ] {
        jobs_core::sqlx::query(stmt).execute(&mut *tx).await?;
    }
    // Deterministic rows (no random()), so two runs export the same file.
    jobs_core::sqlx::query(
        "INSERT INTO offload_demo.expenses
         SELECT g,
                'Employee ' || (g % 5000),
                'CC-' || lpad((g % 97)::text, 3, '0'),
                ((g * 7919) % 200000) / 100.0,
                (ARRAY['EUR','USD','GBP','JPY'])[1 + g % 4],
                (ARRAY['approved','paid','submitted','rejected'])[1 + (g / 7) % 4],
                CASE WHEN (g / 7) % 4 = 2 THEN NULL
                     ELSE timestamptz '2026-01-01 00:00:00+00' + (g % 31536000) * interval '1 second' END,
                CASE g % 10 WHEN 0 THEN 'Lunch, \"client\" meeting'
                            WHEN 1 THEN E'Taxi\\nairport'
                            WHEN 2 THEN 'Café ☕ 東京'
                            WHEN 3 THEN NULL
                            WHEN 4 THEN ''
                            ELSE 'Hotel night ' || g END
         FROM generate_series(1, $1) AS g",
    )
    .bind(rows as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Visibility map and statistics, so planning can use an index-only scan of the key.
    jobs_core::sqlx::query("VACUUM ANALYZE offload_demo.expenses")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn run(cfg: Config, rows: u64, format: &str) -> anyhow::Result<()> {
    jobs_core::db::ensure_database(&cfg.database).await?;
    let pool = jobs_core::db::connect(&cfg.database).await?;
    jobs_core::db::migrate(&pool)
        .await
        .context("migrating the database")?;
    ensure_demo_table(&pool, rows)
        .await
        .context("creating the demo dataset")?;

    let cfg = Arc::new(cfg);
    let runtime = Runtime::start(cfg.clone()).await?;
    // The configured address, or any free port when it is taken (by `offload up`, say).
    let listener = match TcpListener::bind(cfg.api.listen).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(("127.0.0.1", 0)).await?,
    };
    let services = Services::start(runtime, listener).await?;
    let client = Client::new(
        services.api_url.clone(),
        cfg.auth.dev_api_key.expose_secret().to_owned(),
    );

    let started = Instant::now();
    let job = client
        .submit(
            &json!({"kind": "export", "export": {"dataset": "expenses", "format": format}}),
            None,
        )
        .await?;
    let id = job["id"]
        .as_str()
        .context("the API returned no job id")?
        .to_owned();
    note!("job {id} accepted in {:?}", started.elapsed());
    let done = client.watch(&id, false).await?;
    let took = started.elapsed();
    let outcome = report(&services, &done, took);
    services.stop().await;
    outcome
}

fn report(
    services: &Services,
    job: &serde_json::Value,
    took: std::time::Duration,
) -> anyhow::Result<()> {
    if job["status"] != "succeeded" {
        anyhow::bail!("the export {}: {}", job["status"], job["error"]);
    }
    let rows = job["result"]["rows"].as_u64().unwrap_or(0);
    let bytes = job["result"]["bytes"].as_u64().unwrap_or(0);
    let id: jobs_core::JobId = job["id"].as_str().unwrap_or_default().parse()?;
    let format = serde_json::from_value(job["result"]["format"].clone())?;
    let file = services
        .runtime
        .blobs
        .local_path(&jobs_export::result_path(id, format));
    let secs = took.as_secs_f64();
    say!("export succeeded in {secs:.2} s")?;
    match file {
        Some(f) => say!("  file:       {}", f.display())?,
        None => say!("  download:   {}", job["result"]["download_url"])?,
    }
    say!("  rows:       {rows}")?;
    say!("  bytes:      {bytes} ({:.1} MB)", bytes as f64 / 1e6)?;
    say!(
        "  sha256:     {}",
        job["result"]["sha256"].as_str().unwrap_or("?")
    )?;
    say!(
        "  throughput: {:.0} rows/s, {:.1} MB/s",
        rows as f64 / secs,
        bytes as f64 / 1e6 / secs
    )?;
    Ok(())
}
