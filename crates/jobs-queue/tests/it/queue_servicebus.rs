//! What the Service Bus transport does beyond the shared contract, against the double: the
//! outbox parks what the broker will never take, and dead-letter sweeps drain the
//! dead-letter queue into Postgres.

use std::sync::Arc;
use std::time::Duration;

use jobs_queue::outbox::Outbox;
use jobs_queue::{
    ConnectionString, DeadLetter, OutgoingMessage, QueueError, QueueName, QueueSpec,
    ServiceBusTransport, Transport,
};
use servicebus_double::ServiceBusDouble;

use crate::support::TestDb;

async fn service_bus() -> (ServiceBusDouble, Arc<dyn Transport>) {
    let double = ServiceBusDouble::start(Default::default()).await.unwrap();
    let cs = ConnectionString::parse(&double.connection_string()).unwrap();
    let t: Arc<dyn Transport> = Arc::new(ServiceBusTransport::new(&cs).unwrap());
    (double, t)
}

async fn queue(t: &Arc<dyn Transport>, max_delivery: u32) -> QueueName {
    let name = QueueName::parse(&format!("q-{}", uuid::Uuid::new_v4().simple())).unwrap();
    t.ensure_queue(&QueueSpec {
        name: name.clone(),
        lock_duration: Duration::from_secs(30),
        max_delivery_count: max_delivery,
        dedupe_window: Duration::from_secs(600),
    })
    .await
    .unwrap();
    name
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_parks_what_the_broker_refuses_and_relays_the_rest() {
    let db = TestDb::new().await;
    let (_double, t) = service_bus().await;
    let good = queue(&t, 10).await;
    let missing = QueueName::parse("never-created").unwrap();
    let outbox = Outbox::new(db.pool.clone(), t.clone());

    let mut tx = db.pool.begin().await.unwrap();
    outbox
        .write(
            &mut tx,
            &missing,
            &[OutgoingMessage::new("lost-cause", "{}")],
        )
        .await
        .unwrap();
    outbox
        .write(&mut tx, &good, &[OutgoingMessage::new("fine", "{}")])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(outbox.relay_once().await.unwrap(), 2);
    assert_eq!(outbox.pending().await.unwrap(), 0);
    let got = t.receive(&good, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, "fine");
    let (id, reason): (String, String) =
        sqlx::query_as("SELECT message_id, reason FROM offload.parked_messages")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (id.as_str(), reason.as_str()),
        ("lost-cause", "OutboxUndeliverable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_leaves_outbox_rows_in_place() {
    let db = TestDb::new().await;
    let (mut double, t) = service_bus().await;
    let q = queue(&t, 10).await;
    let outbox = Outbox::new(db.pool.clone(), t.clone());
    let mut conn = db.pool.acquire().await.unwrap();
    outbox
        .write(&mut conn, &q, &[OutgoingMessage::new("m", "{}")])
        .await
        .unwrap();
    double.stop().await;
    assert!(matches!(
        outbox.relay_once().await,
        Err(QueueError::Broker(_))
    ));
    assert_eq!(outbox.pending().await.unwrap(), 1);
    double.restart().await.unwrap();
    assert_eq!(outbox.relay_once().await.unwrap(), 1);
    assert_eq!(outbox.pending().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_sweeps_drain_into_postgres_and_hand_each_over_once() {
    let db = TestDb::new().await;
    let (_double, t) = service_bus().await;
    let q = queue(&t, 1).await;
    let batch: Vec<_> = (0..120)
        .map(|i| OutgoingMessage::new(format!("m{i}"), format!("body {i}")))
        .collect();
    t.send(&q, &batch).await.unwrap();
    // One delivery allowed: abandoning moves each to the dead-letter queue.
    loop {
        let got = t.receive(&q, 32, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            t.abandon(&q, &m.lock, Duration::ZERO).await.unwrap();
        }
    }
    assert_eq!(t.depth(&q).await.unwrap().dead_lettered, 120);

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handle = |dead: DeadLetter| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(dead.message_id);
            Ok::<(), QueueError>(())
        }
    };
    jobs_queue::consume::sweep_dead_letters(t.as_ref(), &db.pool, &q, None, &handle)
        .await
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 120);
    assert_eq!(t.depth(&q).await.unwrap().dead_lettered, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM offload.parked_messages WHERE reason = 'MaxDeliveryCountExceeded'"
        )
        .await,
        120
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_larger_than_one_request_are_split_and_all_arrive_in_order() {
    let (_double, t) = service_bus().await;
    let q = queue(&t, 10).await;
    // ~600 KB: four batch requests.
    let batch: Vec<_> = (0..600)
        .map(|i| OutgoingMessage::new(format!("m{i:04}"), "x".repeat(1000)))
        .collect();
    assert_eq!(t.send(&q, &batch).await.unwrap().accepted, 600);
    let mut ids = Vec::new();
    loop {
        let got = t.receive(&q, 50, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
        assert!(t.complete_batch(&q, &locks).await.unwrap().is_empty());
        ids.extend(got.into_iter().map(|m| m.message_id));
    }
    let expected: Vec<_> = (0..600).map(|i| format!("m{i:04}")).collect();
    assert_eq!(ids, expected);
    // A body that fits the limit raw but not once escaped into a batch is refused by name.
    let quotes = OutgoingMessage::new("quotes", "\"".repeat(200 * 1024));
    let err = t.send(&q, &[quotes]).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidMessage { message_id, .. } if message_id == "quotes"),
        "{err}"
    );
}

/// Settings a namespace would refuse are refused at start-up, naming the key, before any
/// request is sent (this endpoint is never reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_a_namespace_refuses_stop_the_start_with_the_key_named() {
    let db = TestDb::new().await;
    let namespace = "Endpoint=sb://offload-test.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s";
    for (layer, key) in [
        ("lock_duration_secs = 2", "queue.lock_duration_secs"),
        ("dedupe_window_secs = 5", "queue.dedupe_window_secs"),
    ] {
        let cfg = db.config(&[&format!(
            "[queue]\ntransport = \"servicebus\"\nservicebus_connection_string = \"{namespace}\"\n{layer}\n"
        )]);
        let err = jobs_queue::runtime::Runtime::start(Arc::new(cfg))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let cfg = db.config(&[&format!(
        "[queue]\ntransport = \"servicebus\"\nservicebus_connection_string = \"{namespace}\"\n\
         [notifier]\ntimeout_secs = 300\n"
    )]);
    let err = jobs_queue::runtime::Runtime::start(Arc::new(cfg))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("notifier.timeout_secs"), "{err}");
}
