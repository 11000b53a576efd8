//! What only the Postgres transport does: sending inside the caller's transaction,
//! keeping its tables small by vacuuming them itself, and ending a receive's wait at a stop.

use std::time::{Duration, Instant};

use jobs_queue::{OutgoingMessage, QueueName, QueueSpec, Transport, vacuum_if_needed};

use crate::support::{TestDb, TestDbExt};

async fn queue(t: &dyn Transport) -> QueueName {
    let q = QueueName::parse("pg-only").unwrap();
    t.ensure_queue(&QueueSpec {
        name: q.clone(),
        lock_duration: Duration::from_secs(30),
        max_delivery_count: 5,
        dedupe_window: Duration::from_secs(600),
    })
    .await
    .unwrap();
    q
}

#[tokio::test]
async fn send_in_commits_and_rolls_back_with_the_callers_transaction() {
    let db = TestDb::new().await;
    let t = db.transport(false).await;
    let q = queue(t.as_ref()).await;

    let mut tx = db.pool.begin().await.unwrap();
    t.send_in(&mut tx, &q, &[OutgoingMessage::new("rolled-back", "x")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(t.depth(&q).await.unwrap().active, 0);
    // The rolled-back id left no duplicate-detection history either.
    let mut tx = db.pool.begin().await.unwrap();
    let r = t
        .send_in(&mut tx, &q, &[OutgoingMessage::new("rolled-back", "y")])
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(
        t.depth(&q).await.unwrap().active,
        0,
        "visible before commit"
    );
    tx.commit().await.unwrap();
    let got = t.receive(&q, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_ref(), b"y");
}

#[tokio::test]
async fn maintenance_vacuums_tables_full_of_dead_rows() {
    let db = TestDb::new().await;
    let t = db.transport(false).await;
    let q = queue(t.as_ref()).await;
    let msgs: Vec<_> = (0..3000)
        .map(|i| OutgoingMessage::new(format!("m{i}"), "x"))
        .collect();
    for chunk in msgs.chunks(500) {
        t.send(&q, chunk).await.unwrap();
    }
    loop {
        let got = t.receive(&q, 500, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
        t.complete_batch(&q, &locks).await.unwrap();
    }
    // Statistics reach pg_stat_user_tables shortly after the transactions that made them.
    let dead = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT n_dead_tup FROM pg_stat_user_tables
             WHERE schemaname = 'offload' AND relname = 'queue_messages'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let vacuumed = loop {
        let v = vacuum_if_needed(&db.pool, 2000).await.unwrap();
        if v.iter().any(|t| t == "queue_messages") {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "never saw 2000 dead rows; now {}",
            dead().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(vacuumed.contains(&"queue_messages".to_owned()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead().await >= 2000 {
        assert!(
            Instant::now() < deadline,
            "vacuum left {} dead rows",
            dead().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stop ends a receive's wait at once (a shutting-down worker does not sit out its long
/// poll), with nothing claimed.
#[tokio::test]
async fn a_stop_ends_a_receives_wait() {
    let db = TestDb::new().await;
    let t = db.transport(true).await;
    let q = queue(t.as_ref()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let receiving = {
        let (t, q, stop) = (t.clone(), q.clone(), stop.clone());
        tokio::spawn(async move {
            t.receive_until(&q, 1, Duration::from_secs(3600), &stop)
                .await
        })
    };
    stop.cancel();
    let got = tokio::time::timeout(Duration::from_secs(60), receiving)
        .await
        .expect("the receive kept waiting after the stop")
        .unwrap()
        .unwrap();
    assert!(got.is_empty());
}
