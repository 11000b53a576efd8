//! Drives `try_process_next` one step at a time with processors written for the test: no
//! sleeps stand in for conditions, each step is awaited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::blob::BlobStore;
use jobs_core::dataset::Catalog;
use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job, JobStore, NewJob, PlannedItem};
use jobs_core::testing::TestDb;
use jobs_core::{JobId, JobKind, JobStatus, TenantId, WorkKind};
use jobs_queue::messages::Queues;
use jobs_queue::messages::WorkItemMessage as _;
use jobs_queue::testing::TestDbExt;
use jobs_queue::{OutgoingMessage, QueueSpec, Transport};
use jobs_worker::{
    Finalizer, KindEnv, Outcome, Processor, Registry, WorkerContext, WorkerSettings,
};
use serde_json::{Value, json};

const ITEM: WorkKind = WorkKind::from_static("test.item");
const FINALIZE: WorkKind = WorkKind::from_static("test.finalize");
const WAIT: Duration = Duration::from_secs(5);

/// Behaves as each item's payload says, and counts its calls per item.
#[derive(Default)]
struct Scripted {
    calls: Mutex<HashMap<u32, u32>>,
    /// Told when a `stuck` item starts.
    stuck: tokio::sync::Notify,
}

#[async_trait]
impl Processor for Scripted {
    fn kind(&self) -> WorkKind {
        ITEM
    }

    async fn process(&self, _: &KindEnv, _: &Job, item: &WorkItem) -> Result<Value, ProcessError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(item.seq).or_default();
            *n += 1;
            *n
        };
        match item.payload["mode"].as_str().unwrap() {
            "ok" => Ok(json!({ "seq": item.seq })),
            "retry_twice" if n <= 2 => {
                Err(ProcessError::retry_after("source busy", Duration::ZERO))
            }
            "retry_twice" => Ok(json!({ "seq": item.seq, "calls": n })),
            "always_retry" => Err(ProcessError::retry_after("still busy", Duration::ZERO)),
            // What a source answering `Retry-After: 9000000000000` amounts to.
            "retry_in_centuries" => {
                Err(ProcessError::retry_after("come back later", Duration::MAX))
            }
            "fatal" => Err(ProcessError::fatal("the row is malformed")),
            // Slow work: longer than the queue's lock duration, so only renewal keeps it.
            "slow" => {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Ok(json!({ "seq": item.seq }))
            }
            // Never ends by itself: only shutdown takes it off the worker.
            "stuck" => {
                self.stuck.notify_one();
                std::future::pending().await
            }
            // A processor's bug met by one item.
            "panic" => panic!("index out of bounds: the len is 3 but the index is 7"),
            other => panic!("unknown mode {other}"),
        }
    }
}

struct SumFinalizer;

#[async_trait]
impl Finalizer for SumFinalizer {
    fn job_kind(&self) -> JobKind {
        JobKind::parse("test").unwrap()
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    async fn finalize(
        &self,
        _: &KindEnv,
        _: &Job,
        items: &[ItemRecord],
    ) -> Result<Value, ProcessError> {
        Ok(json!({ "items": items.len() }))
    }
}

struct Harness {
    _db: TestDb,
    ctx: WorkerContext,
    processor: Arc<Scripted>,
}

async fn harness(lock: Duration, max_delivery: u32) -> Harness {
    let db = TestDb::new().await;
    let transport = db.transport(true).await;
    let queues = Queues::default();
    for q in [&queues.jobs, &queues.work, &queues.events] {
        transport
            .ensure_queue(&QueueSpec {
                name: q.clone(),
                lock_duration: lock,
                max_delivery_count: max_delivery,
                dedupe_window: Duration::from_secs(600),
            })
            .await
            .unwrap();
    }
    let processor = Arc::new(Scripted::default());
    let mut registry = Registry::default();
    registry.register(processor.clone());
    registry.register_finalizer(Arc::new(SumFinalizer));
    let blobs =
        BlobStore::local(&std::env::temp_dir().join(format!("offload-w-{}", uuid::Uuid::new_v4())))
            .unwrap();
    let ctx = WorkerContext {
        env: KindEnv {
            pool: db.pool.clone(),
            catalog: Arc::new(Catalog::new(db.pool.clone(), Default::default())),
            blobs,
            cfg: Arc::new(db.config(&[])),
        },
        store: JobStore::new(db.pool.clone()),
        transport,
        queues,
        registry,
        settings: WorkerSettings {
            concurrency: 1,
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_millis(1),
            max_delivery_count: max_delivery,
            lock_duration: lock,
            max_delay: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(1),
        },
    };
    Harness {
        _db: db,
        ctx,
        processor,
    }
}

/// A running job of kind `test` whose items have the given modes, with its messages sent.
async fn job(h: &Harness, modes: &[&str]) -> JobId {
    job_on(&h.ctx, modes).await
}

async fn job_on(ctx: &WorkerContext, modes: &[&str]) -> JobId {
    let store = &ctx.store;
    let new = NewJob {
        id: JobId::new(),
        tenant_id: TenantId::parse("t").unwrap(),
        kind: JobKind::parse("test").unwrap(),
        params: json!({}),
        idempotency_key: None,
    };
    let id = store.create(&new).await.unwrap().job().id;
    store
        .transition(id, JobStatus::Planning)
        .await
        .unwrap()
        .unwrap();
    let plan: Vec<_> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| PlannedItem {
            seq: i as u32,
            kind: ITEM,
            payload: json!({ "mode": m }),
        })
        .collect();
    store.record_plan(id, &plan).await.unwrap();
    let msgs: Vec<OutgoingMessage> = plan
        .iter()
        .map(|p| {
            WorkItem {
                job_id: id,
                seq: p.seq,
                kind: p.kind.clone(),
                payload: p.payload.clone(),
                correlation_id: "c".into(),
                trace: TraceContext::default(),
            }
            .to_message()
            .unwrap()
        })
        .collect();
    ctx.transport.send(&ctx.queues.work, &msgs).await.unwrap();
    id
}

/// Steps until the queue has nothing for `WAIT`.
async fn drain(h: &Harness) -> u32 {
    let mut steps = 0;
    while jobs_worker::try_process_next(&h.ctx, WAIT).await.unwrap() == Outcome::Processed {
        steps += 1;
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_success_finish_the_job_through_its_finalizer() {
    let h = harness(Duration::from_secs(30), 5).await;
    let id = job(&h, &["ok", "retry_twice", "ok"]).await;
    drain(&h).await;
    let job = h.ctx.store.get_any(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.result, Some(json!({ "items": 3 })));
    let items = h.ctx.store.items(id).await.unwrap();
    // Attempts count deliveries: two that failed, the third that did it.
    assert_eq!(
        (items[0].attempts, items[1].attempts, items[2].attempts),
        (1, 3, 1)
    );
    assert_eq!(items[1].output, Some(json!({ "seq": 1, "calls": 3 })));
    assert_eq!(
        h.processor.calls.lock().unwrap()[&0],
        1,
        "a done item is not processed again"
    );
    // The finished event is on its way to the notifier.
    let events = h
        .ctx
        .transport
        .receive(&h.ctx.queues.events, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

/// A processor that panics fails its item like an error would, with the panic's text as the
/// item's error, after its deliveries; the other items and the worker go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_processor_fails_its_item_with_the_panic_text() {
    let h = harness(Duration::from_secs(30), 2).await;
    let id = job(&h, &["ok", "panic", "ok"]).await;
    drain(&h).await;
    let job = h.ctx.store.get_any(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!((job.progress.done, job.progress.failed), (2, 1));
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("part 1") && error.contains("the processor panicked: index out of bounds"),
        "{error}"
    );
    assert_eq!(
        h.processor.calls.lock().unwrap()[&1],
        2,
        "retried like an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_and_exhausted_items_fail_the_job_and_are_dead_lettered() {
    let h = harness(Duration::from_secs(30), 3).await;
    let id = job(&h, &["ok", "fatal", "always_retry"]).await;
    drain(&h).await;
    let job = h.ctx.store.get_any(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!((job.progress.done, job.progress.failed), (1, 2));
    assert!(
        job.error
            .as_deref()
            .unwrap()
            .contains("2 of 3 parts failed"),
        "{:?}",
        job.error
    );
    assert_eq!(
        h.processor.calls.lock().unwrap()[&1],
        1,
        "a fatal item is not retried"
    );
    assert_eq!(
        h.processor.calls.lock().unwrap()[&2],
        3,
        "retried up to the max delivery count"
    );
    let dead = h
        .ctx
        .transport
        .peek_dead_letters(&h.ctx.queues.work, None, 10)
        .await
        .unwrap();
    let reasons: Vec<_> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["Fatal", "MaxDeliveryCountExceeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_without_crashing_the_worker() {
    let h = harness(Duration::from_secs(30), 5).await;
    h.ctx
        .transport
        .send(
            &h.ctx.queues.work,
            &[OutgoingMessage::new("garbage", "{not an envelope")],
        )
        .await
        .unwrap();
    assert_eq!(drain(&h).await, 1);
    let dead = h
        .ctx
        .transport
        .peek_dead_letters(&h.ctx.queues.work, None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "MalformedEnvelope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_item_keeps_its_lock_by_renewing_it() {
    // The lock lasts 1 s and the item takes 2.5 s: without renewal a second worker would
    // receive it while the first is still working.
    let h = harness(Duration::from_secs(1), 5).await;
    let id = job(&h, &["slow"]).await;
    let first = jobs_worker::try_process_next(&h.ctx, WAIT);
    let second = async {
        // Meanwhile another worker looks for work, for longer than the lock lasts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.ctx
            .transport
            .receive(&h.ctx.queues.work, 1, Duration::from_millis(2000))
            .await
            .unwrap()
    };
    let (first, stolen) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), Outcome::Processed);
    assert!(
        stolen.is_empty(),
        "the item was delivered again while being processed: {stolen:?}"
    );
    assert_eq!(h.processor.calls.lock().unwrap()[&0], 1);
    let item = &h.ctx.store.items(id).await.unwrap()[0];
    assert_eq!(item.status, jobs_core::store::ItemStatus::Done);
}

/// At shutdown a worker takes nothing more, and an item it cannot finish within the grace
/// period is given back at once: another worker receives it without waiting out the lock
/// (60 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_gives_back_what_it_cannot_finish_and_takes_nothing_new() {
    let h = harness(Duration::from_secs(60), 10).await;
    job(&h, &["stuck"]).await;
    let Harness {
        _db,
        mut ctx,
        processor,
    } = h;
    // One loop holds the stuck item; the other three are waiting in a receive when the
    // stop comes, and must leave nothing locked behind.
    ctx.settings.concurrency = 4;
    let ctx = Arc::new(ctx);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(jobs_worker::run_until_stopped(ctx.clone(), stop.clone()));
    processor.stuck.notified().await;
    let stopped = std::time::Instant::now();
    stop.cancel();
    // A message sent now is for another worker.
    let later = job_on(&ctx, &["ok"]).await;
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker did not stop")
        .unwrap();
    let took = stopped.elapsed();
    assert!(
        took >= ctx.settings.shutdown_grace && took < Duration::from_secs(30),
        "stopped after {took:?}"
    );
    // Both messages are there for the next worker now, the stuck one on its 2nd delivery.
    let got = ctx
        .transport
        .receive(&ctx.queues.work, 10, Duration::ZERO)
        .await
        .unwrap();
    let mut seen: Vec<(String, u32)> = got
        .iter()
        .map(|m| (m.message_id.clone(), m.delivery_count))
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().any(|(_, n)| *n == 2), "{seen:?}");
    assert!(
        seen.iter()
            .any(|(id, n)| id.starts_with(&later.to_string()) && *n == 1),
        "{seen:?}"
    );
    assert_eq!(
        processor.calls.lock().unwrap().len(),
        1,
        "only the stuck item ran"
    );
}

/// A processor (a source's `Retry-After`) asking for an absurd delay gets at most
/// `max_delay` (an hour here): the item is back in an hour, not never, and the worker
/// does not fail on the arithmetic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_asked_for_by_a_processor_is_capped() {
    let h = harness(Duration::from_secs(30), 5).await;
    job(&h, &["retry_in_centuries"]).await;
    let step = jobs_worker::try_process_next(&h.ctx, WAIT).await.unwrap();
    assert_eq!(step, Outcome::Processed);
    let wait: f64 = jobs_core::sqlx::query_scalar(
        "SELECT extract(epoch FROM visible_at - now())::float8 FROM offload.queue_messages",
    )
    .fetch_one(&h._db.pool)
    .await
    .unwrap();
    let max = h.ctx.settings.max_delay.as_secs_f64();
    assert!(wait > max - 60.0 && wait <= max, "back in {wait} s");
}
