//! The store side of ingestion against real Postgres: the source concurrency limit's
//! permits (exact under concurrency, leases that come back when a holder dies).

use std::time::Duration;

use jobs_ingest::governor::{Governor, snapshot};
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
async fn until_waiting(gate: &jobs_ingest::governor::Gate, n: usize) {
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
