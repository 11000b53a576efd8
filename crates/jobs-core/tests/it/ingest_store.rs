//! The store side of ingestion against real Postgres: the source concurrency limit's
//! permits (exact under concurrency, leases that come back when a holder dies) and the
//! retry of failed items (rounds that keep an old dead letter from failing a retried item).

use std::time::Duration;

use jobs_core::ingest::governor::{Governor, snapshot};
use jobs_core::store::{ItemOutcome, JobStore, NewJob, PlanOutcome, PlannedItem, RetryOutcome};
use jobs_core::{JobId, JobKind, JobStatus, TenantId, WorkKind};
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::TestDb;

#[tokio::test]
async fn permits_are_exact_and_a_dead_holders_come_back() {
    let db = TestDb::new().await;
    let governor = Governor::new(db.pool.clone());
    let gate = governor
        .gate("crm", 16, Duration::from_secs(1))
        .await
        .unwrap();
    // A fresh source starts at one permit.
    assert_eq!(snapshot(&db.pool, "crm").await.unwrap().unwrap().0, 1);
    jobs_core::sqlx::query("UPDATE offload.source_limits SET permits = 3 WHERE source = 'crm'")
        .execute(&db.pool)
        .await
        .unwrap();

    // Twenty takers at once: exactly three get a permit.
    let mut takers = JoinSet::new();
    for _ in 0..20 {
        let gate = gate.clone();
        takers.spawn(async move { gate.try_acquire().await.unwrap() });
    }
    let mut held = Vec::new();
    while let Some(p) = takers.join_next().await {
        held.extend(p.unwrap());
    }
    assert_eq!(held.len(), 3);
    assert_eq!(snapshot(&db.pool, "crm").await.unwrap().unwrap().1, 3);

    // One is given back and taken again; one holder "dies" (its permit is never given back).
    let first = held.pop().unwrap();
    gate.release(first).await.unwrap();
    let again = gate
        .try_acquire()
        .await
        .unwrap()
        .expect("a permit was given back");
    assert!(gate.try_acquire().await.unwrap().is_none());
    let _dead_holders_permit = held.pop();
    // The live holders give theirs back and the limit drops to one: the only permit left
    // is the dead holder's, so waiting must find it once its lease expires (a live
    // holder's lease, never renewed here, cannot be the one reclaimed).
    for p in [again].into_iter().chain(held) {
        gate.release(p).await.unwrap();
    }
    jobs_core::sqlx::query("UPDATE offload.source_limits SET permits = 1 WHERE source = 'crm'")
        .execute(&db.pool)
        .await
        .unwrap();
    let reclaimed = tokio::time::timeout(Duration::from_secs(20), gate.acquire())
        .await
        .expect("the expired lease came back")
        .unwrap();
    gate.release(reclaimed).await.unwrap();
    assert_eq!(snapshot(&db.pool, "crm").await.unwrap().unwrap().1, 0);
}

/// The ids of `source`'s leases.
async fn leases(db: &TestDb, source: &str) -> Vec<uuid::Uuid> {
    jobs_core::sqlx::query_scalar(
        "SELECT id FROM offload.source_permits WHERE source = $1 ORDER BY id",
    )
    .bind(source)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Waits (without sleeping) until `n` requests of this process wait at `gate`.
async fn until_waiting(gate: &jobs_core::ingest::governor::Gate, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while gate.waiting() != n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the waiters queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_given_back_goes_to_a_waiter_of_the_same_process() {
    let db = TestDb::new().await;
    let governor = Governor::new(db.pool.clone());
    let gate = governor
        .gate("crm", 16, Duration::from_secs(30))
        .await
        .unwrap();
    // A fresh source has one permit; it is taken, and two requests wait for it.
    let held = gate.try_acquire().await.unwrap().expect("the first permit");
    let lease = leases(&db, "crm").await;
    assert_eq!(lease.len(), 1);
    let first = tokio::spawn({
        let gate = gate.clone();
        async move { gate.acquire().await.unwrap() }
    });
    until_waiting(&gate, 1).await;
    let second = tokio::spawn({
        let gate = gate.clone();
        async move { gate.acquire().await.unwrap() }
    });
    until_waiting(&gate, 2).await;

    // Given back, it goes to the longest-waiting request as it is: the same lease, still
    // counted in use — not given back to Postgres and taken again.
    gate.release(held).await.unwrap();
    let handed = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first waiter got the permit")
        .unwrap();
    assert_eq!(leases(&db, "crm").await, lease);
    assert_eq!(snapshot(&db.pool, "crm").await.unwrap().unwrap().1, 1);
    assert_eq!(gate.waiting(), 1);

    // A waiter that stops waiting leaves the queue: the permit then goes back to Postgres.
    second.abort();
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(gate.waiting(), 0);
    gate.release(handed).await.unwrap();
    assert!(leases(&db, "crm").await.is_empty());
    assert_eq!(snapshot(&db.pool, "crm").await.unwrap().unwrap().1, 0);
}

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
            kind: JobKind::INGEST,
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
        store.item_status(id, 1).await.unwrap().as_deref(),
        Some("pending")
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
