//! Ingest benchmark: an ingest job of 5,000 page requests against the mock source (20 ms
//! per request, `429` above 12 concurrent requests, slower while overloaded), with the
//! adaptive concurrency limit starting from 1; wall time against the ideal
//! (requests × latency / limit), records counted in the output. Then the queue's own cost
//! per work item (receive, status update, complete) with a processor that does nothing.
//!
//! ```sh
//! cargo bench -p jobs-worker --bench ingest
//! cargo bench -p jobs-worker --bench ingest -- --pages 2000 --limit 8 --latency-ms 20
//! ```
//!
//! Needs the Postgres of the test suite (`scripts/ensure-postgres.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job, NewJob, PlannedItem};
use jobs_core::testing::TestDb;
use jobs_core::{JobId, JobKind, JobStatus, TenantId, WorkKind};
use jobs_ingest::IngestSpec;
use jobs_queue::messages::WorkItemMessage as _;
use jobs_queue::runtime::Runtime;
use jobs_worker::{Finalizer, Processor, Registry, WorkerContext, WorkerSettings};
use mock_source::{MockSource, MockSourceOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PAGE: u64 = 50;
const PARTITION_PAGES: u64 = 10;

struct Args {
    pages: u64,
    limit: u32,
    latency_ms: u64,
    noop_items: u32,
}

fn args() -> Args {
    let mut a = Args {
        pages: 5000,
        limit: 12,
        latency_ms: 20,
        noop_items: 2000,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match argv[i].as_str() {
            "--pages" => a.pages = value().expect("--pages N"),
            "--limit" => a.limit = value().expect("--limit K") as u32,
            "--latency-ms" => a.latency_ms = value().expect("--latency-ms MS"),
            "--noop-items" => a.noop_items = value().expect("--noop-items N") as u32,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

async fn runtime(db: &TestDb, blob_root: &std::path::Path, source_url: &str) -> Runtime {
    let toml = format!(
        r#"
[database]
max_connections = 48
[queue]
poll_interval_ms = 50
[worker]
concurrency = 32
[telemetry]
log_filter = "warn"
[blob]
root = "{}"
[sources.bench]
base_url = "{source_url}"
pagination = "cursor"
page_size = {PAGE}
partition_size = {}
max_concurrency = 64
max_attempts = 20
"#,
        blob_root.display(),
        PAGE * PARTITION_PAGES
    );
    Runtime::start(Arc::new(db.config(&[&toml]))).await.unwrap()
}

fn worker(rt: &Runtime, registry: Registry) -> Arc<WorkerContext> {
    Arc::new(WorkerContext {
        env: rt.kind_env(),
        settings: WorkerSettings::from_config(&rt.cfg),
        store: rt.store.clone(),
        transport: rt.transport.clone(),
        queues: rt.queues.clone(),
        registry,
    })
}

/// Creates a job, records its plan and sends its items, as the API and enqueuer would.
async fn start_job(rt: &Runtime, kind: JobKind, params: Value, plan: Vec<PlannedItem>) -> JobId {
    let id = JobId::new();
    rt.store
        .create(&NewJob {
            id,
            tenant_id: TenantId::parse("bench").unwrap(),
            kind,
            params,
            idempotency_key: None,
        })
        .await
        .unwrap();
    rt.store.transition(id, JobStatus::Planning).await.unwrap();
    rt.store.record_plan(id, &plan).await.unwrap();
    let messages: Vec<_> = plan
        .into_iter()
        .map(|p| {
            WorkItem {
                job_id: id,
                seq: p.seq,
                kind: p.kind,
                payload: p.payload,
                correlation_id: id.to_string(),
                trace: TraceContext::default(),
            }
            .to_message()
            .unwrap()
        })
        .collect();
    for batch in messages.chunks(500) {
        rt.transport.send(&rt.queues.work, batch).await.unwrap();
    }
    id
}

async fn wait_finished(rt: &Runtime, id: JobId) -> Job {
    loop {
        let job = rt.store.get_any(id).await.unwrap();
        if job.status.is_terminal() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ids in the job's NDJSON pages: (records, distinct ids).
fn count_output(root: &std::path::Path, job: JobId) -> (u64, BTreeSet<u64>) {
    let dir = root.join("ingest/bench").join(job.to_string());
    let (mut records, mut ids) = (0, BTreeSet::new());
    for partition in std::fs::read_dir(dir).unwrap() {
        let partition = partition.unwrap().path();
        if !partition.is_dir() {
            continue;
        }
        for page in std::fs::read_dir(partition).unwrap() {
            for line in std::fs::read_to_string(page.unwrap().path())
                .unwrap()
                .lines()
            {
                let v: Value = serde_json::from_str(line).unwrap();
                records += 1;
                ids.insert(v["id"].as_u64().unwrap());
            }
        }
    }
    (records, ids)
}

async fn ingest(a: &Args) {
    let records = a.pages * PAGE;
    let source = Arc::new(
        MockSource::start(MockSourceOptions {
            records,
            latency: Duration::from_millis(a.latency_ms),
            concurrency_limit: Some(a.limit),
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let db = TestDb::new().await;
    let root = std::env::temp_dir().join(format!("offload-bench-{}", uuid::Uuid::new_v4()));
    let rt = runtime(&db, &root, &source.base_url()).await;
    let spec = json!({"source": "bench", "from_id": 1, "to_id": records});
    let parsed: IngestSpec = serde_json::from_value(spec.clone()).unwrap();
    let plan = jobs_ingest::plan::plan(&parsed, &rt.cfg.sources["bench"], &db.pool)
        .await
        .unwrap();
    let items = plan.len();

    // The worker runs before the job comes, as in a deployment: warmed by a no-op job
    // (its consumer loops polling, its connections open), not by this source.
    let stop = CancellationToken::new();
    let mut registry = jobs_builtins::registry();
    registry.register(Arc::new(Noop));
    registry.register_finalizer(Arc::new(Noop));
    let ctx = worker(&rt, registry);
    let run = tokio::spawn(jobs_worker::run_until_stopped(ctx, stop.clone()));
    let warm_up = start_job(&rt, NOOP_JOB, json!({}), noop_plan(64)).await;
    wait_finished(&rt, warm_up).await;
    // The new database's files (copied from the template) are flushed now, not by a
    // checkpoint in the middle of the measurement. (Needs a superuser; skipped otherwise.)
    if let Err(e) = jobs_core::sqlx::query("CHECKPOINT").execute(&db.pool).await {
        eprintln!("no CHECKPOINT before measuring: {e}");
    }

    let started = Instant::now();
    let id = start_job(&rt, jobs_ingest::KIND, json!({"ingest": spec}), plan).await;
    let sent_after = started.elapsed();
    // Permits and permits held, sampled every 20 ms while the job runs.
    let sampler = {
        let (pool, stop) = (db.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.is_cancelled() {
                if let Ok(Some((permits, in_use, _))) =
                    jobs_ingest::governor::snapshot(&pool, "bench").await
                {
                    samples.push((started.elapsed(), permits, in_use));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    // Requests in flight at the source and its throttled count, every 2 ms: where the
    // time goes (ramp, steady state, overloads, tail).
    let timeline = {
        let (source, stop) = (source.clone(), stop.clone());
        tokio::spawn(async move {
            let mut points = Vec::new();
            while !stop.is_cancelled() {
                let s = source.stats();
                points.push((started.elapsed(), s.in_flight, s.throttled));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            points
        })
    };
    let job = wait_finished(&rt, id).await;
    let wall = started.elapsed();
    stop.cancel();
    run.await.unwrap();
    let samples = sampler.await.unwrap();
    println!(
        "| job created, {items} items planned and sent (as the API and enqueuer would) to a running worker | {:.2} s |  |",
        sent_after.as_secs_f64()
    );
    print_timeline(&timeline.await.unwrap(), wall);
    let start: Vec<String> = (0..20u32)
        .map(|i| {
            let (from, to) = (
                Duration::from_millis(50) * i,
                Duration::from_millis(50) * (i + 1),
            );
            samples
                .iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .map(|s| s.1.to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    println!(
        "| first second, permits per 50 ms | {} |  |",
        start.join(", ")
    );
    let samples: Vec<(u32, u32)> = samples.iter().map(|s| (s.1, s.2)).collect();
    let mean = |f: fn(&(u32, u32)) -> u32| {
        samples.iter().map(|s| f64::from(f(s))).sum::<f64>() / samples.len().max(1) as f64
    };
    let (mean_permits, mean_held) = (mean(|s| s.0), mean(|s| s.1));
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);

    let (written, ids) = count_output(&root, id);
    let stats = source.stats();
    let limit = jobs_ingest::governor::snapshot(&db.pool, "bench")
        .await
        .unwrap()
        .unwrap();
    let ideal = Duration::from_millis(a.pages * a.latency_ms) / a.limit;
    let expected: BTreeSet<u64> = (1..=records).collect();
    println!();
    println!("| ingest | value |");
    println!("|---|---|");
    println!(
        "| page requests (pages × {PAGE} records, {items} items of {PARTITION_PAGES} pages) | {} |",
        a.pages
    );
    println!(
        "| source | {} ms per request, 429 above {} in flight |",
        a.latency_ms, a.limit
    );
    println!(
        "| wall time (first item sent → job succeeded) | {:.2} s |",
        wall.as_secs_f64()
    );
    println!(
        "| ideal ({} × {} ms / {}) | {:.2} s |",
        a.pages,
        a.latency_ms,
        a.limit,
        ideal.as_secs_f64()
    );
    println!(
        "| wall / ideal | {:.3}× |",
        wall.as_secs_f64() / ideal.as_secs_f64()
    );
    // The latency the controller learned for the unloaded source: the mock's 20 ms plus
    // what this (shared, 2-core) machine adds under the benchmark's own load.
    let unloaded = limit.2.baseline_ms.unwrap_or(a.latency_ms as f64);
    let observed_ideal = a.pages as f64 * unloaded / 1000.0 / f64::from(a.limit);
    println!(
        "| ideal at the observed unloaded latency ({unloaded:.1} ms) / wall ÷ it | {observed_ideal:.2} s / {:.3}× |",
        wall.as_secs_f64() / observed_ideal
    );
    println!(
        "| requests: ok / 429 / 5xx | {} / {} / {} |",
        stats.ok, stats.throttled, stats.errors
    );
    println!(
        "| most requests in flight at the source | {} |",
        stats.max_in_flight
    );
    println!(
        "| permits, mean / held, mean / at the end | {mean_permits:.1} / {mean_held:.1} / {} |",
        limit.0
    );
    println!(
        "| controller at the end: limit / last overload level / failed probes in a row | {:.2} / {} / {} |",
        limit.2.limit,
        limit.2.ceiling.map_or("none".into(), |c| format!("{c:.2}")),
        limit.2.failed_probes
    );
    let answered = stats.ok + stats.throttled + stats.errors + stats.rejected;
    let penalty_ms = MockSourceOptions::default().overload_penalty.as_secs_f64() * 1000.0;
    println!(
        "| time a request spent at the source, mean: all / without the {penalty_ms} ms overload penalties (the mock's {} ms, as served) | {:.2} / {:.2} ms |",
        a.latency_ms,
        stats.busy_micros as f64 / 1000.0 / answered.max(1) as f64,
        (stats.busy_micros as f64 / 1000.0 - stats.penalized as f64 * penalty_ms)
            / answered.max(1) as f64
    );
    println!(
        "| requests that paid the overload penalty (throttled, or served during an overload) | {} |",
        stats.penalized
    );
    println!(
        "| requests in flight at the source, mean (time at the source / wall time) | {:.2} |",
        stats.busy_micros as f64 / 1e6 / wall.as_secs_f64()
    );
    println!(
        "| records written / distinct / expected | {written} / {} / {records} |",
        ids.len()
    );
    println!(
        "| lost / duplicated | {} / {} |",
        expected.difference(&ids).count(),
        written - ids.len() as u64
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Mean requests in flight at the source and requests throttled, per tenth of the run.
fn print_timeline(points: &[(Duration, u64, u64)], wall: Duration) {
    const WINDOWS: u32 = 10;
    let width = wall / WINDOWS;
    println!();
    println!("| from (s) | in flight at the source, mean | throttled |");
    println!("|---:|---:|---:|");
    let first = |n: u64| {
        points
            .iter()
            .find(|p| p.1 >= n)
            .map_or("never".into(), |p| format!("{:.2} s", p.0.as_secs_f64()))
    };
    println!(
        "| first request at the source / {} in flight | {} / {} |  |",
        points.iter().map(|p| p.1).max().unwrap_or(0).min(12),
        first(1),
        first(points.iter().map(|p| p.1).max().unwrap_or(0).min(12))
    );
    // The start, finer: requests in flight (mean) and throttled, per 50 ms of the first
    // second.
    let start: Vec<String> = (0..20u32)
        .map(|i| {
            let (from, to) = (
                Duration::from_millis(50) * i,
                Duration::from_millis(50) * (i + 1),
            );
            let inside: Vec<_> = points
                .iter()
                .filter(|(t, _, _)| *t >= from && *t < to)
                .collect();
            // (+ 0.0: an empty sum is -0.0.)
            let mean =
                inside.iter().map(|p| p.1 as f64).sum::<f64>() / inside.len().max(1) as f64 + 0.0;
            let throttled = inside.last().map_or(0, |p| p.2) - inside.first().map_or(0, |p| p.2);
            if throttled > 0 {
                format!("{mean:.1} ({throttled}×429)")
            } else {
                format!("{mean:.1}")
            }
        })
        .collect();
    println!(
        "| first second, in flight per 50 ms | {} |  |",
        start.join(", ")
    );
    if let Some(last) = points.iter().rev().find(|p| p.1 > 0) {
        println!(
            "| last request answered → job succeeded (the last partitions, the manifest) | {:.3} s |  |",
            wall.saturating_sub(last.0).as_secs_f64()
        );
    }
    let mut throttled_before = 0;
    for w in 0..WINDOWS {
        let (from, to) = (width * w, width * (w + 1));
        let inside: Vec<_> = points
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < to)
            .collect();
        let mean = inside.iter().map(|p| p.1 as f64).sum::<f64>() / inside.len().max(1) as f64;
        let throttled = inside.last().map_or(throttled_before, |p| p.2);
        println!(
            "| {:.2} | {mean:.1} | {} |",
            from.as_secs_f64(),
            throttled - throttled_before
        );
        throttled_before = throttled;
    }
}

const NOOP: WorkKind = WorkKind::from_static("bench.noop");
const NOOP_FINALIZE: WorkKind = WorkKind::from_static("bench.noop.finalize");
const NOOP_JOB: JobKind = JobKind::from_static("bench.noop");

struct Noop;

#[async_trait]
impl Processor for Noop {
    fn kind(&self) -> WorkKind {
        NOOP
    }

    async fn process(
        &self,
        _: &jobs_worker::KindEnv,
        _: &Job,
        _: &WorkItem,
    ) -> Result<Value, ProcessError> {
        Ok(json!({}))
    }
}

#[async_trait]
impl Finalizer for Noop {
    fn job_kind(&self) -> JobKind {
        NOOP_JOB
    }

    fn finalize_kind(&self) -> WorkKind {
        NOOP_FINALIZE
    }

    async fn finalize(
        &self,
        _: &jobs_worker::KindEnv,
        _: &Job,
        _: &[ItemRecord],
    ) -> Result<Value, ProcessError> {
        Ok(json!({}))
    }
}

fn noop_plan(items: u32) -> Vec<PlannedItem> {
    (0..items)
        .map(|seq| PlannedItem {
            seq,
            kind: NOOP,
            payload: json!({}),
        })
        .collect()
}

/// Per work item: receive, job and item status reads, the item's completion with the
/// counter update, the message's completion — the queue's cost, with nothing processed.
async fn overhead(a: &Args) {
    let db = TestDb::new().await;
    let root = std::env::temp_dir().join(format!("offload-bench-{}", uuid::Uuid::new_v4()));
    let rt = runtime(&db, &root, "http://127.0.0.1:9").await;
    let mut registry = Registry::default();
    registry.register(Arc::new(Noop));
    registry.register_finalizer(Arc::new(Noop));
    let ctx = worker(&rt, registry);
    start_job(&rt, NOOP_JOB, json!({}), noop_plan(a.noop_items)).await;
    let mut took = Vec::with_capacity(a.noop_items as usize);
    for _ in 0..a.noop_items {
        let t = Instant::now();
        let step = jobs_worker::try_process_next(&ctx, Duration::from_secs(5))
            .await
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(step, jobs_worker::Outcome::Processed);
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!();
    println!(
        "| queue overhead per work item ({} items, one at a time) | value |",
        a.noop_items
    );
    println!("|---|---|");
    println!("| p50 | {:.2} ms |", at(0.50).as_secs_f64() * 1000.0);
    println!("| p99 | {:.2} ms |", at(0.99).as_secs_f64() * 1000.0);
    println!(
        "| max | {:.2} ms |",
        took[took.len() - 1].as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        ingest(&a).await;
        overhead(&a).await;
    });
}
