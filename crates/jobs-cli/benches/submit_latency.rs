//! `POST /v1/jobs` latency under a steady open-loop load. Prints a Markdown table (recorded
//! in BENCHMARKS.md).
//!
//! Runs the API in this process against its own database (`offload_bench_api`, recreated),
//! sends `--rate` requests per second for `--seconds` from a separate task set (requests
//! are started on schedule whether or not earlier ones have answered, so slow answers
//! cannot hide behind a slower send rate), and reports latency percentiles.
//!
//! ```sh
//! cargo bench -p jobs-cli --bench submit_latency [-- --rate 200 --seconds 20]
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_cli::{Roles, Services};
use jobs_core::Config;
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
    let rate = arg("--rate", 200);
    let seconds = arg("--seconds", 20);
    let base = Config::load(None).unwrap();
    let url = base.database.url.expose_secret().to_owned();
    let (head, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(h, q)| (h, Some(q)));
    let head = &head[..head.rfind('/').unwrap()];
    let bench_url = match query {
        Some(q) => format!("{head}/offload_bench_api?{q}"),
        None => format!("{head}/offload_bench_api"),
    };
    let mut cfg = Config::with_database_url(&bench_url).unwrap();
    cfg.telemetry.log_filter = "warn".into();
    let admin = jobs_core::db::connect(&Config::load(None).unwrap().database)
        .await
        .unwrap();
    jobs_core::sqlx::query("DROP DATABASE IF EXISTS offload_bench_api WITH (FORCE)")
        .execute(&admin)
        .await
        .unwrap();
    jobs_core::db::ensure_database(&cfg.database).await.unwrap();
    let pool = jobs_core::db::connect(&cfg.database).await.unwrap();
    jobs_core::db::migrate(&pool).await.unwrap();
    jobs_cli::demo::ensure_demo_table(&pool, 10_000)
        .await
        .unwrap();

    let key = cfg.auth.dev_api_key.expose_secret().to_owned();
    let runtime = Runtime::start(Arc::new(cfg)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The API alone: the other services would spend the same 2 cores exporting every job.
    let services = Services::start_roles(runtime, listener, Roles::API_ONLY)
        .await
        .unwrap();
    let endpoint = format!("{}/v1/jobs", services.api_url);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let body = json!({"kind": "export", "export": {"dataset": "expenses", "format": "csv",
        "filter": {"status": {"in": ["approved", "paid"]}, "amount": {"gte": 10}}}});

    // Warm-up: connections, statement caches.
    for _ in 0..50 {
        http.post(&endpoint)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
    }

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..total {
        tick.tick().await;
        let (http, endpoint, key, body) =
            (http.clone(), endpoint.clone(), key.clone(), body.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = http
                .post(&endpoint)
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 202);
            (t.elapsed(), ok)
        });
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (d, ok) = r.unwrap();
        lat.push(d);
        errors += u32::from(!ok);
    }
    let wall = started.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "| rate (req/s) | requests | achieved (req/s) | p50 ms | p90 ms | p99 ms | max ms | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {rate} | {total} | {:.0} | {} | {} | {} | {} | {errors} |",
        total as f64 / wall.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap())
    );
    services.stop().await;
}
