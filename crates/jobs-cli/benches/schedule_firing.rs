//! How fast enqueuers turn due schedules into jobs, and what an idle look costs. Prints a
//! Markdown table (recorded in BENCHMARKS.md).
//!
//! Runs against its own database (`offload_bench_schedules`, recreated). For each row,
//! `--schedules` schedules are made due at once (as after downtime, or many schedules on
//! the same minute) and `enqueuers` concurrent `fire_due` passes fire them all: each firing
//! is one transaction (claim, tick record, job, `job.requested`, next tick).
//!
//! ```sh
//! cargo bench -p jobs-cli --bench schedule_firing [-- --schedules 5000]
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use jobs_core::schedule::{NewSchedule, ScheduleId, ScheduleStore};
use jobs_core::{Config, TenantId};
use jobs_enqueuer::EnqueuerContext;
use jobs_enqueuer::schedules::fire_due;
use jobs_queue::runtime::Runtime;
use secrecy::ExposeSecret;
use serde_json::json;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--schedules", 5000);
    let url = Config::load(None)
        .unwrap()
        .database
        .url
        .expose_secret()
        .to_owned();
    let (head, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(h, q)| (h, Some(q)));
    let head = &head[..head.rfind('/').unwrap()];
    let bench_url = match query {
        Some(q) => format!("{head}/offload_bench_schedules?{q}"),
        None => format!("{head}/offload_bench_schedules"),
    };
    let mut cfg = Config::with_database_url(&bench_url).unwrap();
    cfg.telemetry.log_filter = "warn".into();
    let admin = jobs_core::db::connect(&Config::load(None).unwrap().database)
        .await
        .unwrap();
    jobs_core::sqlx::query("DROP DATABASE IF EXISTS offload_bench_schedules WITH (FORCE)")
        .execute(&admin)
        .await
        .unwrap();
    jobs_core::db::ensure_database(&cfg.database).await.unwrap();
    let pool = jobs_core::db::connect(&cfg.database).await.unwrap();
    jobs_core::db::migrate(&pool).await.unwrap();
    let runtime = Runtime::start(Arc::new(cfg)).await.unwrap();
    let tenant = TenantId::parse("bench").unwrap();
    runtime.store.ensure_tenant(&tenant, None).await.unwrap();
    let store = ScheduleStore::new(pool.clone());
    for _ in 0..n {
        store
            .create(&NewSchedule {
                id: ScheduleId::new(),
                tenant_id: tenant.clone(),
                name: "bench".into(),
                cron: "* * * * *".into(),
                timezone: "Europe/Paris".into(),
                kind: jobs_export::KIND,
                params: json!({"export": {"dataset": "expenses", "format": "csv"}}),
                next_run_at: Utc::now(),
            })
            .await
            .unwrap();
    }

    println!("| enqueuers | schedules due | seconds | firings/s |");
    println!("|---:|---:|---:|---:|");
    // Each round fires a tick of its own: due at `tick`, fired at `tick` + 30 s (no skipped
    // ticks to count), the next one a minute later.
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut now = base;
    for (round, enqueuers) in [1, 2, 4].into_iter().enumerate() {
        let tick = base + chrono::Duration::hours(round as i64);
        jobs_core::sqlx::query("UPDATE offload.schedules SET next_run_at = $1")
            .bind(tick)
            .execute(&pool)
            .await
            .unwrap();
        now = tick + chrono::Duration::seconds(30);
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..enqueuers {
            let ctx = EnqueuerContext::from_runtime(&runtime, jobs_builtins::job_types());
            set.spawn(async move {
                let mut fired = 0;
                loop {
                    let n = fire_due(&ctx, now).await.unwrap();
                    fired += n;
                    if n == 0 {
                        return fired;
                    }
                }
            });
        }
        let mut fired = 0;
        while let Some(f) = set.join_next().await {
            fired += f.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(fired as u64, n, "every due schedule fires once");
        println!("| {enqueuers} | {n} | {secs:.2} | {:.0} |", n as f64 / secs);
    }

    // An idle look: nothing due (every schedule's next tick is 30 s after `now`).
    let ctx = EnqueuerContext::from_runtime(&runtime, jobs_builtins::job_types());
    let looks = 2000;
    let started = Instant::now();
    for _ in 0..looks {
        assert_eq!(fire_due(&ctx, now).await.unwrap(), 0);
    }
    let micros = started.elapsed().as_micros() as f64 / f64::from(looks);
    println!();
    println!("idle look (nothing due, {n} schedules): {micros:.0} µs");
    let jobs: i64 = jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload.jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!("jobs made: {jobs} ({} rounds of {n})", jobs as u64 / n);
}
