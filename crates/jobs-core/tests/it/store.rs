//! The job-status store against real Postgres: idempotent creation, tenant isolation,
//! listing, the state machine at the database, and exactly-once item completion under
//! concurrency.

use std::collections::HashSet;

use jobs_core::store::{
    CreateOutcome, ItemOutcome, ItemStatus, JobFilter, JobStore, MarkOutcome, NewJob, NewUpload,
    PlanOutcome, PlannedItem, RetryOutcome, StoreError, UploadUse,
};
use jobs_core::{JobId, JobKind, JobStatus, TenantId, WorkKind};
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::TestDb;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn new_job(t: &TenantId, key: Option<&str>, params: serde_json::Value) -> NewJob {
    NewJob {
        id: JobId::new(),
        tenant_id: t.clone(),
        kind: JobKind::from_static("export"),
        params,
        idempotency_key: key.map(str::to_owned),
    }
}

async fn running_job(store: &JobStore, items: u32) -> JobId {
    let job = store
        .create(&new_job(&tenant("acme"), None, json!({})))
        .await
        .unwrap();
    let id = job.job().id;
    store
        .transition(id, JobStatus::Planning)
        .await
        .unwrap()
        .unwrap();
    let plan: Vec<_> = (0..items)
        .map(|seq| PlannedItem {
            seq,
            kind: WorkKind::parse("export.chunk").unwrap(),
            payload: json!({ "from": seq * 10, "to": seq * 10 + 10 }),
        })
        .collect();
    assert_eq!(
        store.record_plan(id, &plan).await.unwrap(),
        PlanOutcome::Started
    );
    id
}

#[tokio::test]
async fn idempotency_keys_return_the_same_job_or_conflict() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let acme = tenant("acme");
    let first = store
        .create(&new_job(&acme, Some("k1"), json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert!(matches!(first, CreateOutcome::Created(_)));
    // Same key, same body (keys in another order): the same job.
    let again = store
        .create(&new_job(&acme, Some("k1"), json!({"b": 2, "a": 1})))
        .await
        .unwrap();
    assert_eq!(again, CreateOutcome::Existing(first.job().clone()));
    // Same key, other body: a conflict naming the key.
    let err = store
        .create(&new_job(&acme, Some("k1"), json!({"a": 9})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::IdempotencyConflict { key } if key == "k1"),
        "{err}"
    );
    // Keys are per tenant.
    let other = store
        .create(&new_job(&tenant("globex"), Some("k1"), json!({"a": 9})))
        .await;
    assert!(matches!(other.unwrap(), CreateOutcome::Created(_)));
}

#[tokio::test]
async fn concurrent_first_requests_with_one_key_create_one_job() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create(&new_job(&tenant("acme"), Some("race"), json!({"x": 1})))
                .await
                .unwrap()
        });
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    while let Some(res) = tasks.join_next().await {
        let outcome = res.unwrap();
        created += matches!(outcome, CreateOutcome::Created(_)) as usize;
        ids.insert(outcome.job().id);
    }
    assert_eq!((created, ids.len()), (1, 1));
}

#[tokio::test]
async fn tenants_never_see_each_others_jobs() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let job = store
        .create(&new_job(&tenant("acme"), None, json!({})))
        .await
        .unwrap();
    let id = job.job().id;
    assert!(store.get(&tenant("acme"), id).await.unwrap().is_some());
    assert!(store.get(&tenant("globex"), id).await.unwrap().is_none());
    let page = store
        .list(&tenant("globex"), &JobFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(page.jobs.is_empty());
}

#[tokio::test]
async fn listing_is_newest_first_filtered_and_paged() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let acme = tenant("acme");
    let mut created = Vec::new();
    for i in 0..7 {
        let mut j = new_job(&acme, None, json!({ "i": i }));
        if i % 2 == 0 {
            j.kind = JobKind::from_static("import");
        }
        created.push(store.create(&j).await.unwrap().job().id);
    }
    store
        .transition(created[6], JobStatus::Cancelled)
        .await
        .unwrap()
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&acme, &JobFilter::default(), cursor, 3)
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let newest_first: Vec<_> = created.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);

    let imports = JobFilter {
        kind: Some(JobKind::from_static("import")),
        ..Default::default()
    };
    assert_eq!(
        store
            .list(&acme, &imports, None, 100)
            .await
            .unwrap()
            .jobs
            .len(),
        4
    );
    let cancelled = JobFilter {
        status: Some(JobStatus::Cancelled),
        ..Default::default()
    };
    let page = store.list(&acme, &cancelled, None, 100).await.unwrap();
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [created[6]]
    );
}

#[tokio::test]
async fn the_database_refuses_transitions_the_state_machine_forbids() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let id = store
        .create(&new_job(&tenant("acme"), None, json!({})))
        .await
        .unwrap()
        .job()
        .id;
    assert!(
        store
            .transition(id, JobStatus::Succeeded)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .transition(id, JobStatus::Running)
            .await
            .unwrap()
            .is_none()
    );
    let planning = store
        .transition(id, JobStatus::Planning)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(planning.status, JobStatus::Planning);
    // Two racing moves out of `planning`: one wins.
    let (a, b) = tokio::join!(
        store.transition(id, JobStatus::Cancelling),
        store.fail(id, "plan failed")
    );
    assert_eq!(a.unwrap().is_some() as u8 + b.unwrap().is_some() as u8, 1);
    let job = store.get(&tenant("acme"), id).await.unwrap().unwrap();
    assert!(matches!(
        job.status,
        JobStatus::Cancelling | JobStatus::Failed
    ));
    if job.status == JobStatus::Failed {
        assert_eq!(job.error.as_deref(), Some("plan failed"));
        assert!(job.finished_at.is_some());
    }
}

#[tokio::test]
async fn a_plan_is_recorded_once_and_an_empty_plan_finalizes() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let id = running_job(&store, 3).await;
    let job = store.get_any(id).await.unwrap();
    assert_eq!(
        (job.status, job.progress.total),
        (JobStatus::Running, Some(3))
    );
    assert!(job.started_at.is_some());
    // A redelivered plan request changes nothing.
    let plan = [PlannedItem {
        seq: 0,
        kind: WorkKind::parse("export.other").unwrap(),
        payload: json!({ "changed": true }),
    }];
    assert_eq!(
        store.record_plan(id, &plan).await.unwrap(),
        PlanOutcome::NotPlanning(JobStatus::Running)
    );
    assert_eq!(store.get_any(id).await.unwrap().progress.total, Some(3));
    // The recorded plan is what a re-send uses: unchanged by the second request.
    let items = store.items(id).await.unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].item.kind.as_str(), "export.chunk");
    assert_eq!(items[2].item.payload, json!({ "from": 20, "to": 30 }));
    assert!(items.iter().all(|i| i.status == ItemStatus::Pending));

    let empty = store
        .create(&new_job(&tenant("acme"), None, json!({})))
        .await
        .unwrap()
        .job()
        .id;
    store
        .transition(empty, JobStatus::Planning)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.record_plan(empty, &[]).await.unwrap(),
        PlanOutcome::StartedEmpty
    );
    assert_eq!(
        store.get_any(empty).await.unwrap().status,
        JobStatus::Finalizing
    );
}

#[tokio::test]
async fn completing_an_item_twice_counts_once() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let id = running_job(&store, 2).await;
    let c = store
        .complete_item(
            id,
            0,
            &ItemOutcome::Done {
                output: json!({"rows": 1}),
            },
        )
        .await
        .unwrap();
    assert!(c.counted && c.finished_job.is_none());
    let c = store
        .complete_item(
            id,
            0,
            &ItemOutcome::Done {
                output: json!({"rows": 1}),
            },
        )
        .await
        .unwrap();
    assert!(!c.counted);
    assert_eq!(c.job_status, JobStatus::Running);
    assert_eq!((c.progress.done, c.progress.failed), (1, 0));
    store.record_attempt(id, 1, 1, "timeout").await.unwrap();
    // Deliveries 2 and 3 went to workers that were killed; the 4th fails the item.
    let c = store
        .complete_delivered_item(
            id,
            1,
            4,
            &ItemOutcome::Failed {
                reason: "source said 404".into(),
            },
        )
        .await
        .unwrap();
    let attempts: Vec<u32> = store
        .items(id)
        .await
        .unwrap()
        .iter()
        .map(|i| i.attempts)
        .collect();
    assert_eq!(attempts, [0, 4], "attempts count deliveries");
    assert_eq!(c.finished_job, Some(JobStatus::Finalizing));
    assert_eq!(c.job_status, JobStatus::Finalizing);
    assert_eq!(
        (c.progress.done, c.progress.failed, c.progress.total),
        (1, 1, Some(2))
    );
    // A redelivered completion after the job moved on still reports where the job is.
    let again = store
        .complete_item(
            id,
            1,
            &ItemOutcome::Failed {
                reason: "again".into(),
            },
        )
        .await
        .unwrap();
    assert!(!again.counted && again.finished_job.is_none());
    assert_eq!(again.job_status, JobStatus::Finalizing);
    let items = store.items(id).await.unwrap();
    assert_eq!(items[0].output, Some(json!({"rows": 1})));
    assert_eq!((items[1].status.as_str(), items[1].attempts), ("failed", 4));
    assert_eq!(items[1].last_error.as_deref(), Some("source said 404"));
    let err = store
        .complete_item(
            id,
            9,
            &ItemOutcome::Done {
                output: json!({"rows": 1}),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownItem { seq: 9, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_completers_finish_the_job_exactly_once() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    const ITEMS: u32 = 200;
    const COMPLETERS: usize = 24;
    let id = running_job(&store, ITEMS).await;
    // Every completer completes every item, in its own order: each item is completed
    // COMPLETERS times concurrently, as if redelivered to every worker.
    let mut tasks = JoinSet::new();
    for c in 0..COMPLETERS {
        let store = store.clone();
        tasks.spawn(async move {
            let (mut counted, mut finished) = (0, 0);
            for i in 0..ITEMS {
                let seq = (i + c as u32 * 37) % ITEMS;
                let outcome = if seq.is_multiple_of(10) {
                    ItemOutcome::Failed {
                        reason: "bad".into(),
                    }
                } else {
                    ItemOutcome::Done {
                        output: json!({ "rows": seq }),
                    }
                };
                let r = store.complete_item(id, seq, &outcome).await.unwrap();
                counted += r.counted as u32;
                finished += r.finished_job.is_some() as u32;
            }
            (counted, finished)
        });
    }
    let (mut counted, mut finished) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (c, f) = r.unwrap();
        counted += c;
        finished += f;
    }
    assert_eq!(
        counted, ITEMS,
        "an item was counted more than once or not at all"
    );
    assert_eq!(
        finished, 1,
        "the job's completion must be reported to exactly one caller"
    );
    let job = store.get_any(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Finalizing);
    assert_eq!((job.progress.done, job.progress.failed), (180, 20));
}

#[tokio::test]
async fn a_cancelling_job_is_cancelled_by_its_last_completion() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let id = running_job(&store, 2).await;
    store
        .transition(id, JobStatus::Cancelling)
        .await
        .unwrap()
        .unwrap();
    store
        .complete_item(
            id,
            0,
            &ItemOutcome::Done {
                output: json!({"rows": 1}),
            },
        )
        .await
        .unwrap();
    let c = store
        .complete_item(id, 1, &ItemOutcome::Skipped)
        .await
        .unwrap();
    assert_eq!(c.finished_job, Some(JobStatus::Cancelled));
    assert_eq!(
        (c.progress.done, c.progress.failed, c.progress.skipped),
        (1, 0, 1)
    );
    let job = store.get_any(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.finished_at.is_some());
}

/// The retry of failed items: rounds keep an old dead letter from failing a retried item.
#[tokio::test]
async fn a_retried_item_is_not_failed_by_an_earlier_rounds_dead_letter() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let acme = TenantId::parse("acme").unwrap();
    let id = JobId::new();
    store
        .create(&NewJob {
            id,
            tenant_id: acme.clone(),
            kind: JobKind::from_static("ingest"),
            params: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    store.transition(id, JobStatus::Planning).await.unwrap();
    let plan: Vec<_> = (0..2)
        .map(|seq| PlannedItem {
            seq,
            kind: WorkKind::parse("ingest.partition").unwrap(),
            payload: json!({"from_id": seq * 10 + 1, "to_id": seq * 10 + 10}),
        })
        .collect();
    assert_eq!(
        store.record_plan(id, &plan).await.unwrap(),
        PlanOutcome::Started
    );

    let retry = |tenant: TenantId| {
        let store = store.clone();
        async move {
            let mut tx = store.pool().begin().await.unwrap();
            let out = store.retry_failed_in(&mut tx, &tenant, id).await.unwrap();
            tx.commit().await.unwrap();
            out
        }
    };
    assert_eq!(
        retry(acme.clone()).await,
        Some(RetryOutcome::NotFinished(JobStatus::Running))
    );
    assert_eq!(retry(TenantId::parse("other").unwrap()).await, None);

    store
        .complete_item(id, 0, &ItemOutcome::Done { output: json!({}) })
        .await
        .unwrap();
    let last = store.fail_dead_lettered(id, 1, 0, "dead").await.unwrap();
    assert_eq!(last.job_status, JobStatus::Finalizing);
    store.fail(id, "1 of 2 parts failed").await.unwrap();

    let Some(RetryOutcome::Retried { job, items }) = retry(acme.clone()).await else {
        panic!("the failed item is retried");
    };
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!((job.progress.done, job.progress.failed), (1, 0));
    assert_eq!(job.error, None);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].item.seq, items[0].round), (1, 1));
    assert_eq!(store.retries(id).await.unwrap(), 1);

    // The first round's dead letter, swept again, changes nothing.
    let stale = store.fail_dead_lettered(id, 1, 0, "dead").await.unwrap();
    assert!(!stale.counted);
    assert_eq!(
        store.item_status(id, 1).await.unwrap(),
        Some(ItemStatus::Pending)
    );
    // The retried item completes through the normal path and the job finalizes again.
    let done = store
        .complete_item(id, 1, &ItemOutcome::Done { output: json!({}) })
        .await
        .unwrap();
    assert_eq!(done.finished_job, Some(JobStatus::Finalizing));
    assert_eq!((done.progress.done, done.progress.failed), (2, 0));
    // Only a failed job with failed items can be retried.
    assert_eq!(
        retry(acme).await,
        Some(RetryOutcome::NotFinished(JobStatus::Finalizing))
    );
}

/// Tenant `acme` with one recorded upload.
async fn tenant_with_upload(store: &JobStore) -> (TenantId, uuid::Uuid) {
    let acme = tenant("acme");
    store.ensure_tenant(&acme, None).await.unwrap();
    let upload = uuid::Uuid::now_v7();
    store
        .create_upload(&NewUpload {
            id: upload,
            tenant: &acme,
            path: "uploads/acme/photo",
            bytes: 3,
            sha256: "00",
            etag: None,
        })
        .await
        .unwrap();
    (acme, upload)
}

/// Any kind whose stored parameters name `upload_id` under its own key keeps that upload
/// while its job is unfinished — the rule is the SDK's, not the import's.
#[tokio::test]
async fn an_upload_any_kinds_unfinished_job_names_is_kept() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let (acme, upload) = tenant_with_upload(&store).await;
    // Named under another key than the job's kind: not a reader.
    let bystander = store
        .create(&NewJob {
            id: JobId::new(),
            tenant_id: acme.clone(),
            kind: JobKind::from_static("acme.report"),
            params: json!({"acme.report": {}, "notes": {"upload_id": upload.to_string()}}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(bystander.job().status, JobStatus::Queued);
    let reader = store
        .create(&NewJob {
            id: JobId::new(),
            tenant_id: acme.clone(),
            kind: JobKind::from_static("acme.thumbnails"),
            params: json!({"acme.thumbnails": {"upload_id": upload.to_string()}}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let id = reader.job().id;
    assert_eq!(
        store.mark_upload_deleted(&acme, upload).await.unwrap(),
        MarkOutcome::InUse(UploadUse::Job {
            job_id: id.as_uuid(),
            kind: "acme.thumbnails".into(),
            status: "queued".into(),
        })
    );
    // Once the reader has finished, the upload can go.
    store
        .transition(id, JobStatus::Cancelled)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.mark_upload_deleted(&acme, upload).await.unwrap(),
        MarkOutcome::Marked(_)
    ));
}

/// A job of any kind that names an upload share-locks the upload's row as it is created, so
/// a deletion that looks while the job's transaction is open waits for it and then sees it
/// (migration 13's trigger; before, only imports took the lock and this deletion went ahead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waits_for_any_kinds_job_being_created_with_the_upload() {
    let db = TestDb::new().await;
    let store = JobStore::new(db.pool.clone());
    let (acme, upload) = tenant_with_upload(&store).await;
    let mut tx = db.pool.begin().await.unwrap();
    let job = JobId::new();
    store
        .create_in(
            &mut tx,
            &NewJob {
                id: job,
                tenant_id: acme.clone(),
                kind: JobKind::from_static("acme.thumbnails"),
                params: json!({"acme.thumbnails": {"upload_id": upload.to_string()}}),
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    let deletion = {
        let (store, acme) = (store.clone(), acme.clone());
        tokio::spawn(async move { store.mark_upload_deleted(&acme, upload).await })
    };
    jobs_core::testing::eventually(
        "the deletion waiting on the upload's row",
        std::time::Duration::from_secs(30),
        || async {
            assert!(
                !deletion.is_finished(),
                "the deletion did not wait for the job being created"
            );
            let waiting: i64 = jobs_core::sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%FOR UPDATE%'",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    tx.commit().await.unwrap();
    assert_eq!(
        deletion.await.unwrap().unwrap(),
        MarkOutcome::InUse(UploadUse::Job {
            job_id: job.as_uuid(),
            kind: "acme.thumbnails".into(),
            status: "queued".into(),
        })
    );
}
