//! The receive loops of `queue::consume` against the Postgres transport.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::supervise::Liveness;
use jobs_core::testing::eventually;
use jobs_queue::consume::consume_until_stopped;
use jobs_queue::{OutgoingMessage, QueueError, QueueName, QueueSpec, Transport};
use tokio_util::sync::CancellationToken;

use crate::support::{TestDb, TestDbExt};

/// A handler that panics on one message does not take its loop down: the loop goes on with
/// the next message, and the poison message, given back each time, is dead-lettered when
/// its deliveries run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_loses_one_message_not_the_loop() {
    let db = TestDb::new().await;
    let t: Arc<dyn Transport> = db.transport(true).await;
    let q = QueueName::parse("poison").unwrap();
    t.ensure_queue(&QueueSpec {
        name: q.clone(),
        lock_duration: Duration::from_secs(60),
        max_delivery_count: 2,
        dedupe_window: Duration::from_secs(60),
    })
    .await
    .unwrap();
    t.send(
        &q,
        &[
            OutgoingMessage::new("poison", "panic"),
            OutgoingMessage::new("fine", "ok"),
        ],
    )
    .await
    .unwrap();

    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = CancellationToken::new();
    let running = {
        let (t, q, stop, handled) = (t.clone(), q.clone(), stop.clone(), handled.clone());
        tokio::spawn(consume_until_stopped(
            "panic-test",
            t,
            q,
            1,
            Duration::from_secs(1),
            stop,
            move |msg| {
                let handled = handled.clone();
                async move {
                    if msg.body.as_ref() == b"panic" {
                        panic!("index out of bounds: the len is 3 but the index is 7");
                    }
                    handled.lock().unwrap().push(msg.message_id);
                    Ok::<(), QueueError>(())
                }
            },
        ))
    };
    let dead = eventually(
        "the poison message is dead-lettered",
        Duration::from_secs(60),
        || {
            let (t, q) = (t.clone(), q.clone());
            async move {
                let dead = t.peek_dead_letters(&q, None, 10).await.unwrap();
                (!dead.is_empty()).then_some(dead)
            }
        },
    )
    .await;
    stop.cancel();
    running.await.unwrap();

    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "poison");
    assert_eq!(dead[0].delivery_count, 2);
    assert_eq!(*handled.lock().unwrap(), ["fine"]);
    assert_eq!(
        Liveness::process().restarts("panic-test"),
        0,
        "the loop itself was restarted"
    );
}
