//! Service Bus transport benchmark against the in-repo double of Service Bus's REST API.
//! Prints a Markdown table (recorded in BENCHMARKS.md).
//!
//! The double runs in this process on its own runtime (two threads), over loopback HTTP/1.1:
//! the figures measure the transport's request pattern (batching, one request per peek-lock
//! and per settle) and HTTP overhead on this machine, not Azure's service times. Work-item
//! bodies are real `WorkItem` envelopes (~330 bytes); duplicate detection is on.
//!
//! ```sh
//! cargo bench -p jobs-queue --bench servicebus_transport [-- --items N]
//! ```

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::{JobId, WorkKind};
use jobs_queue::{
    ConnectionString, OutgoingMessage, QueueName, QueueSpec, ServiceBusTransport, Transport,
};
use servicebus_double::ServiceBusDouble;
use tokio::task::JoinSet;

fn items_arg() -> usize {
    let mut items = 20_000;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--items" => items = it.next().and_then(|v| v.parse().ok()).expect("--items N"),
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    items
}

fn work_items(job: JobId, n: usize) -> Vec<OutgoingMessage> {
    (0..n)
        .map(|seq| {
            let item = WorkItem {
                job_id: job,
                seq: seq as u32,
                kind: WorkKind::parse("export.chunk").unwrap(),
                payload: serde_json::json!({"from": seq * 1000, "to": seq * 1000 + 1000, "rows": 1000}),
                correlation_id: format!("req-{job}"),
                trace: TraceContext::default(),
            };
            OutgoingMessage::new(item.message_id(), item.encode().unwrap())
        })
        .collect()
}

async fn queue(t: &Arc<dyn Transport>) -> QueueName {
    let name = QueueName::parse(&format!("bench-{}", uuid::Uuid::new_v4().simple())).unwrap();
    t.ensure_queue(&QueueSpec {
        name: name.clone(),
        lock_duration: Duration::from_secs(60),
        max_delivery_count: 10,
        dedupe_window: Duration::from_secs(600),
    })
    .await
    .unwrap();
    name
}

/// `receivers` loops of receive(1) + complete until `n` messages are done; returns the
/// elapsed time and every message's receive+complete latency.
async fn drain(
    t: &Arc<dyn Transport>,
    q: &QueueName,
    n: usize,
    receivers: usize,
) -> (Duration, Vec<Duration>) {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..receivers {
        let (t, q, done) = (t.clone(), q.clone(), done.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while done.load(std::sync::atomic::Ordering::Relaxed) < n {
                let at = Instant::now();
                let got = t.receive(&q, 1, Duration::ZERO).await.unwrap();
                let Some(m) = got.into_iter().next() else {
                    break;
                };
                t.complete(&q, &m.lock).await.unwrap();
                lat.push(at.elapsed());
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(l) = tasks.join_next().await {
        all.extend(l.unwrap());
    }
    (started.elapsed(), all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let items = items_arg();
    // The double gets its own runtime, as a broker would be its own process.
    let broker = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let double = broker
        .block_on(ServiceBusDouble::start(Default::default()))
        .unwrap();
    let cs = ConnectionString::parse(&double.connection_string()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t: Arc<dyn Transport> = Arc::new(ServiceBusTransport::new(&cs).unwrap());
        println!("| case | messages | requests | time | rate | p50 | p99 |");
        println!("|---|---:|---:|---:|---:|---:|---:|");

        let q = queue(&t).await;
        let batch = work_items(JobId::new(), items);
        let before = double.requests();
        let started = Instant::now();
        t.send(&q, &batch).await.unwrap();
        let took = started.elapsed();
        println!(
            "| enqueue work items (one send, batched) | {items} | {} | {:.2} s | {:.0}/s | | |",
            double.requests() - before,
            took.as_secs_f64(),
            items as f64 / took.as_secs_f64()
        );
        assert_eq!(t.depth(&q).await.unwrap().active, items as u64);

        for receivers in [1, 16] {
            let n = if receivers == 1 { items.min(5_000) } else { items };
            let q = queue(&t).await;
            t.send(&q, &work_items(JobId::new(), n)).await.unwrap();
            let before = double.requests();
            let (took, mut lat) = drain(&t, &q, n, receivers).await;
            lat.sort();
            assert_eq!(lat.len(), n);
            println!(
                "| receive 1 + complete, {receivers} receiver(s) | {n} | {} | {:.2} s | {:.0}/s | {:.2} ms | {:.2} ms |",
                double.requests() - before,
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64(),
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
    });
    drop(double);
}
