//! Postgres queue transport benchmark. Prints a Markdown table (recorded in BENCHMARKS.md).
//!
//! Runs against the configured Postgres server (OFFLOAD__DATABASE__URL; server settings
//! untouched) in a database of its own, `offload_bench`, recreated at start. Bodies are
//! ~200 bytes; duplicate detection is on (600 s window) unless a row says otherwise.
//!
//! ```sh
//! cargo bench -p jobs-queue --bench queue_transport [-- --messages N] [--only send|batch|single|flow]
//! ```

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobs_core::Config;
use jobs_queue::{
    OutgoingMessage, PgTransport, PgTransportOptions, QueueName, QueueSpec, Transport,
};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::task::JoinSet;

const BATCH: usize = 100;

struct Args {
    messages: u64,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        messages: 1_000_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--messages" => {
                a.messages = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--only" => a.only = it.next(),
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    a
}

fn body(i: u64) -> Vec<u8> {
    let s = format!(
        r#"{{"job_id":"0193a5c4-7f1e-7cc2-9d4b-5b8e2f1a{i:08}","seq":{i},"kind":"export.chunk","payload":{{"from":{},"to":{}}},"correlation_id":"req-{i}","trace":{{}}}}"#,
        i * 1000,
        i * 1000 + 1000
    );
    let mut b = s.into_bytes();
    b.resize(200, b' ');
    b
}

fn batch(from: u64, n: u64) -> Vec<OutgoingMessage> {
    (from..from + n)
        .map(|i| OutgoingMessage::new(format!("msg-{i}"), body(i)))
        .collect()
}

struct Bench {
    transport: Arc<PgTransport>,
    pool: PgPool,
    n: u64,
    rows: Vec<String>,
}

impl Bench {
    async fn queue(&self, name: &str, dedupe: bool) -> QueueName {
        let q = QueueName::parse(name).unwrap();
        self.transport
            .ensure_queue(&QueueSpec {
                name: q.clone(),
                lock_duration: Duration::from_secs(300),
                max_delivery_count: 10,
                dedupe_window: if dedupe {
                    Duration::from_secs(600)
                } else {
                    Duration::ZERO
                },
            })
            .await
            .unwrap();
        q
    }

    async fn reset(&self) {
        self.pool
            .execute(
                "TRUNCATE offload.queue_messages, offload.queue_dedupe, offload.queue_dead_letters",
            )
            .await
            .unwrap();
        self.pool
            .execute("VACUUM ANALYZE offload.queue_messages")
            .await
            .unwrap();
    }

    /// Sends `n` messages in batches of 100 from `senders` concurrent senders.
    async fn send(&self, q: &QueueName, senders: u64, n: u64) -> Duration {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..senders {
            let (t, q, next) = (self.transport.clone(), q.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let from = next.fetch_add(BATCH as u64, Ordering::Relaxed);
                    if from >= n {
                        return;
                    }
                    let r = t
                        .send(&q, &batch(from, BATCH.min((n - from) as usize) as u64))
                        .await
                        .unwrap();
                    assert_eq!(r.duplicates, 0);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        start.elapsed()
    }

    /// `consumers` concurrent consumers receive `per_receive` at a time and complete each
    /// receive's messages (one complete per message when per_receive is 1, one batch
    /// complete otherwise) until `n` messages are gone.
    async fn drain(&self, q: &QueueName, consumers: usize, per_receive: usize, n: u64) -> Duration {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..consumers {
            let (t, q, done) = (self.transport.clone(), q.clone(), done.clone());
            tasks.spawn(async move {
                while done.load(Ordering::Relaxed) < n {
                    let got = t.receive(&q, per_receive, Duration::ZERO).await.unwrap();
                    if got.is_empty() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    if per_receive == 1 {
                        t.complete(&q, &got[0].lock).await.unwrap();
                    } else {
                        let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
                        assert!(t.complete_batch(&q, &locks).await.unwrap().is_empty());
                    }
                    done.fetch_add(got.len() as u64, Ordering::Relaxed);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        start.elapsed()
    }

    async fn sizes(&self) -> (i64, i64) {
        sqlx::query_as(
            "SELECT pg_table_size('offload.queue_messages'), pg_indexes_size('offload.queue_messages')",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    fn row(&mut self, what: &str, workers: usize, n: u64, took: Duration, note: &str) {
        let rate = n as f64 / took.as_secs_f64();
        let line = format!(
            "| {what} | {workers} | {n} | {:.1} | {} | {note} |",
            took.as_secs_f64(),
            group(rate as u64)
        );
        println!("{line}");
        self.rows.push(line);
    }
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(b: i64) -> String {
    format!("{:.1} MB", b as f64 / 1_048_576.0)
}

async fn bench_db() -> PgPool {
    let cfg = Config::load(None).unwrap();
    let server: PgConnectOptions = cfg.database.url.expose_secret().parse().unwrap();
    let mut admin = PgConnection::connect_with(&server.clone().database("postgres"))
        .await
        .unwrap();
    admin
        .execute("DROP DATABASE IF EXISTS offload_bench WITH (FORCE)")
        .await
        .unwrap();
    admin
        .execute("CREATE DATABASE offload_bench")
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect_with(server.database("offload_bench"))
        .await
        .unwrap();
    jobs_core::db::migrate(&pool).await.unwrap();
    pool
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let pool = bench_db().await;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
         ('fsync','synchronous_commit','shared_buffers','wal_level','max_wal_size','server_version')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The transport as a service runs it: default options, maintenance included.
    let mut options = PgTransportOptions::from_config(&Config::load(None).unwrap());
    // Receivers as many as the bench pool has connections, as the figures were measured.
    options.receiver_connections = pool.options().get_max_connections();
    let transport = Arc::new(PgTransport::start(pool.clone(), options).await.unwrap());
    let mut b = Bench {
        transport,
        pool,
        n: args.messages,
        rows: Vec::new(),
    };
    let run = |s: &str| args.only.as_deref().is_none_or(|o| o == s);
    let n = b.n;

    println!("server: {settings:?}");
    println!("| operation | workers | messages | seconds | messages/s | note |");
    println!("|---|---:|---:|---:|---:|---|");

    if run("send") {
        for (senders, dedupe) in [(1, true), (4, true), (4, false)] {
            b.reset().await;
            let q = b.queue(&format!("send{senders}{dedupe}"), dedupe).await;
            let took = b.send(&q, senders, n).await;
            let note = if dedupe {
                "batches of 100, dedupe on"
            } else {
                "batches of 100, dedupe off"
            };
            b.row("send", senders as usize, n, took, note);
        }
    }
    for (mode, per_receive) in [("batch", BATCH), ("single", 1)] {
        if !run(mode) {
            continue;
        }
        for consumers in [1, 4, 8, 32] {
            b.reset().await;
            let q = b.queue(&format!("{mode}{consumers}"), true).await;
            b.send(&q, 4, n).await;
            let took = b.drain(&q, consumers, per_receive, n).await;
            let what = if per_receive == 1 {
                "receive 1 + complete 1"
            } else {
                "receive 100 + complete 100"
            };
            b.row(
                what,
                consumers,
                n,
                took,
                "queue pre-filled with all messages",
            );
            let depth = b.transport.depth(&q).await.unwrap();
            assert_eq!(depth.active, 0, "messages left behind");
        }
    }
    if run("flow") {
        // Sustained flow: producers and consumers run together with a bounded backlog, and
        // the hot table's size is sampled as 1M messages pass through.
        b.reset().await;
        let q = b.queue("flow", true).await;
        let before = b.sizes().await;
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let producer = {
            let (t, q, sent, done) = (b.transport.clone(), q.clone(), sent.clone(), done.clone());
            tokio::spawn(async move {
                while sent.load(Ordering::Relaxed) < n {
                    // Keep the backlog at or below 20,000 messages.
                    if sent.load(Ordering::Relaxed) - done.load(Ordering::Relaxed) > 20_000 {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let from = sent.load(Ordering::Relaxed);
                    let k = (BATCH as u64).min(n - from);
                    t.send(&q, &batch(from, k)).await.unwrap();
                    sent.fetch_add(k, Ordering::Relaxed);
                }
            })
        };
        let mut max_size = (0, 0);
        let mut samples = Vec::new();
        let consumers = {
            let mut set = JoinSet::new();
            for _ in 0..4 {
                let (t, q, done) = (b.transport.clone(), q.clone(), done.clone());
                set.spawn(async move {
                    while done.load(Ordering::Relaxed) < n {
                        let got = t.receive(&q, 50, Duration::from_millis(100)).await.unwrap();
                        if got.is_empty() {
                            continue;
                        }
                        let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
                        t.complete_batch(&q, &locks).await.unwrap();
                        done.fetch_add(got.len() as u64, Ordering::Relaxed);
                    }
                });
            }
            set
        };
        let mut next_sample = n / 10;
        while done.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if done.load(Ordering::Relaxed) >= next_sample {
                let s = b.sizes().await;
                samples.push((done.load(Ordering::Relaxed), s));
                max_size = (max_size.0.max(s.0), max_size.1.max(s.1));
                next_sample += n / 10;
            }
        }
        producer.await.unwrap();
        consumers.join_all().await;
        let took = start.elapsed();
        let after = b.sizes().await;
        b.row(
            "sustained flow: send 100 + receive 50/complete 50",
            4,
            n,
            took,
            "backlog ≤ 20,000",
        );
        println!();
        println!("Hot table (queue_messages) size during the sustained flow:");
        println!("| point | table | indexes |");
        println!("|---|---:|---:|");
        println!("| before | {} | {} |", mb(before.0), mb(before.1));
        for (at, s) in &samples {
            println!(
                "| after {} messages | {} | {} |",
                group(*at),
                mb(s.0),
                mb(s.1)
            );
        }
        println!(
            "| after all {} | {} | {} |",
            group(n),
            mb(after.0),
            mb(after.1)
        );
        println!(
            "| largest sample | {} | {} |",
            mb(max_size.0),
            mb(max_size.1)
        );
    }
    println!();
    println!("Full table:");
    for r in &b.rows {
        println!("{r}");
    }
}
