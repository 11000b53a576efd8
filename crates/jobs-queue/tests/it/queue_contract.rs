//! The queue transport contract: the semantics every transport must keep, written once and
//! run against each transport through `contract_suite!`: Postgres with LISTEN/NOTIFY,
//! Postgres polling only, Service Bus against the in-repo double, and Service Bus against a
//! real namespace when `OFFLOAD_SERVICEBUS_CONNECTION_STRING` is set.
//!
//! Where a transport declares a gap in its [`Capabilities`] (Service Bus's REST API cannot
//! dead-letter explicitly or report duplicates), the check takes the route that transport
//! offers instead and still checks the outcome.

use crate::support::TestDbExt;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jobs_queue::{
    Capabilities, MAX_BODY_BYTES, MAX_DELIVERY_REASON, OutgoingMessage, QueueError, QueueName,
    QueueSpec, SendReport, Transport,
};
use tokio::task::JoinSet;

type Dyn = Arc<dyn Transport>;

const NO_WAIT: Duration = Duration::ZERO;
/// Upper bound for waits on conditions that should happen promptly; tests return as soon as
/// the condition holds. Longer where the broker's minimum lock duration is longer.
fn patience(t: &Dyn) -> Duration {
    Duration::from_secs(10) + 3 * t.capabilities().min_lock_duration
}

fn caps(t: &Dyn) -> Capabilities {
    t.capabilities()
}

/// A fresh queue; durations below the broker's minimums are raised to them.
async fn queue(t: &Dyn, lock: Duration, max_delivery: u32, dedupe: Duration) -> QueueName {
    let name = QueueName::parse(&format!("q-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let c = caps(t);
    let dedupe = if dedupe.is_zero() {
        dedupe
    } else {
        dedupe.max(c.min_dedupe_window)
    };
    t.ensure_queue(&QueueSpec {
        name: name.clone(),
        lock_duration: lock.max(c.min_lock_duration),
        max_delivery_count: max_delivery,
        dedupe_window: dedupe,
    })
    .await
    .unwrap();
    name
}

async fn default_queue(t: &Dyn) -> QueueName {
    queue(t, Duration::from_secs(30), 10, Duration::from_secs(600)).await
}

fn msg(id: &str) -> OutgoingMessage {
    OutgoingMessage::new(id, format!("body of {id}").into_bytes())
}

/// Checks a send report: exact where the transport reports duplicates, otherwise that every
/// message counted as sent.
fn expect_report(t: &Dyn, r: SendReport, accepted: usize, duplicates: usize) {
    if caps(t).reports_duplicates {
        assert_eq!((r.accepted, r.duplicates), (accepted, duplicates));
    } else {
        assert_eq!((r.accepted, r.duplicates), (accepted + duplicates, 0));
    }
}

/// Receives until `n` messages arrived or `patience` passed.
async fn receive_n(t: &Dyn, q: &QueueName, n: usize) -> Vec<jobs_queue::ReceivedMessage> {
    let deadline = std::time::Instant::now() + patience(t);
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        got.extend(
            t.receive(q, n - got.len(), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    got
}

pub async fn send_and_receive_round_trip(t: Dyn) {
    let q = default_queue(&t).await;
    let sent = msg("m1").with_property("traceparent", "00-abc-def-01");
    let report = t.send(&q, std::slice::from_ref(&sent)).await.unwrap();
    assert_eq!((report.accepted, report.duplicates), (1, 0));

    let before = Utc::now();
    let got = t.receive(&q, 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, "m1");
    assert_eq!(m.body, sent.body);
    assert_eq!(
        m.properties,
        BTreeMap::from([("traceparent".into(), "00-abc-def-01".into())])
    );
    assert_eq!(m.delivery_count, 1);
    assert!(
        m.locked_until > before + chrono::Duration::seconds(25),
        "{:?}",
        m.locked_until
    );
    t.complete(&q, &m.lock).await.unwrap();
    assert!(t.receive(&q, 10, NO_WAIT).await.unwrap().is_empty());
}

pub async fn batches_keep_their_order(t: Dyn) {
    let q = default_queue(&t).await;
    let batch: Vec<_> = (0..250).map(|i| msg(&format!("m{i:03}"))).collect();
    assert_eq!(t.send(&q, &batch).await.unwrap().accepted, 250);
    let mut seen = Vec::new();
    loop {
        let got = t.receive(&q, 64, NO_WAIT).await.unwrap();
        if got.is_empty() {
            break;
        }
        let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
        assert!(t.complete_batch(&q, &locks).await.unwrap().is_empty());
        seen.extend(got.into_iter().map(|m| m.message_id));
    }
    let expected: Vec<_> = (0..250).map(|i| format!("m{i:03}")).collect();
    assert_eq!(seen, expected);
}

pub async fn duplicate_ids_are_dropped_within_the_window(t: Dyn) {
    let q = default_queue(&t).await;
    // Within one batch: the first occurrence wins.
    let mut first = msg("dup");
    first.body = "first".into();
    let mut second = msg("dup");
    second.body = "second".into();
    let r = t.send(&q, &[first, second, msg("other")]).await.unwrap();
    expect_report(&t, r, 2, 1);
    // Across batches, and after the first copy was completed.
    let got = t.receive(&q, 10, NO_WAIT).await.unwrap();
    assert_eq!(got[0].body.as_ref(), b"first");
    for m in &got {
        t.complete(&q, &m.lock).await.unwrap();
    }
    let r = t.send(&q, &[msg("dup"), msg("new")]).await.unwrap();
    expect_report(&t, r, 1, 1);
    let got = t.receive(&q, 10, NO_WAIT).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
}

pub async fn duplicate_detection_forgets_after_the_window(t: Dyn) {
    let window = Duration::from_secs(1).max(caps(&t).min_dedupe_window);
    let q = queue(&t, Duration::from_secs(30), 10, window).await;
    let r = t.send(&q, &[msg("a")]).await.unwrap();
    expect_report(&t, r, 1, 0);
    let r = t.send(&q, &[msg("a")]).await.unwrap();
    expect_report(&t, r, 0, 1);
    // The condition under test is the passing of the window itself.
    tokio::time::sleep(window + Duration::from_millis(1100)).await;
    let r = t.send(&q, &[msg("a")]).await.unwrap();
    expect_report(&t, r, 1, 0);
    let got = receive_n(&t, &q, 2).await;
    assert_eq!(
        got.len(),
        2,
        "the copy within the window was not dropped, or the later one was"
    );
    assert!(t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty());
}

pub async fn duplicate_detection_can_be_disabled(t: Dyn) {
    let q = queue(&t, Duration::from_secs(30), 10, Duration::ZERO).await;
    let r = t.send(&q, &[msg("a"), msg("a")]).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 0));
    assert_eq!(t.send(&q, &[msg("a")]).await.unwrap().accepted, 1);
    assert_eq!(t.depth(&q).await.unwrap().active, 3);
}

pub async fn scheduled_messages_wait_for_their_time(t: Dyn) {
    let q = default_queue(&t).await;
    let at = Utc::now() + chrono::Duration::milliseconds(1500);
    t.send(&q, &[msg("later").scheduled_at(at), msg("now")])
        .await
        .unwrap();
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.active, depth.scheduled), (1, 1));
    let got = t.receive(&q, 10, NO_WAIT).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["now"]
    );
    assert!(t.receive(&q, 10, NO_WAIT).await.unwrap().is_empty());
    let got = t.receive(&q, 10, patience(&t)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, "later");
    assert!(Utc::now() >= at, "received before its scheduled time");
}

pub async fn a_locked_message_is_hidden_and_settles_once(t: Dyn) {
    let q = default_queue(&t).await;
    t.send(&q, &[msg("m")]).await.unwrap();
    let got = t.receive(&q, 1, NO_WAIT).await.unwrap();
    assert!(
        t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty(),
        "locked message was visible"
    );
    let depth = t.depth(&q).await.unwrap();
    let locked = if caps(&t).counts_locked { 1 } else { 0 };
    assert_eq!((depth.active, depth.locked), (1, locked));
    t.complete(&q, &got[0].lock).await.unwrap();
    let again = t.complete(&q, &got[0].lock).await.unwrap_err();
    assert!(matches!(again, QueueError::LockLost { .. }), "{again}");
    assert_eq!(t.depth(&q).await.unwrap().active, 0);
}

pub async fn an_expired_lock_releases_the_message_and_its_token(t: Dyn) {
    let q = queue(&t, Duration::from_millis(500), 10, Duration::from_secs(600)).await;
    t.send(&q, &[msg("m")]).await.unwrap();
    let first = t.receive(&q, 1, NO_WAIT).await.unwrap().remove(0);
    // Wait for the lock to expire: the message comes back by itself.
    let second = t.receive(&q, 1, patience(&t)).await.unwrap().remove(0);
    assert_eq!(second.message_id, "m");
    assert_eq!(second.delivery_count, 2);
    assert_ne!(first.lock, second.lock);
    // The old holder can no longer settle or renew what the new holder has.
    let mut attempts = vec![
        t.complete(&q, &first.lock).await,
        t.abandon(&q, &first.lock, NO_WAIT).await,
        t.abandon(&q, &first.lock, Duration::from_secs(1)).await,
        t.renew_lock(&q, &first.lock).await.map(|_| ()),
    ];
    if caps(&t).dead_letter {
        attempts.push(t.dead_letter(&q, &first.lock, "x", "y").await);
    }
    for res in attempts {
        assert!(matches!(res, Err(QueueError::LockLost { .. })), "{res:?}");
    }
    t.complete(&q, &second.lock).await.unwrap();
}

pub async fn renewing_extends_the_lock(t: Dyn) {
    let q = queue(&t, Duration::from_secs(3), 10, Duration::from_secs(600)).await;
    t.send(&q, &[msg("m")]).await.unwrap();
    let m = t.receive(&q, 1, NO_WAIT).await.unwrap().remove(0);
    // Service Bus's REST API states lock expiries to the second: renew a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let until = t.renew_lock(&q, &m.lock).await.unwrap();
    assert!(until > m.locked_until, "{until} <= {}", m.locked_until);
    assert!(t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty());
    t.complete(&q, &m.lock).await.unwrap();
}

pub async fn abandon_returns_the_message_now_or_after_a_delay(t: Dyn) {
    let q = default_queue(&t).await;
    t.send(&q, &[msg("m")]).await.unwrap();
    let m = t.receive(&q, 1, NO_WAIT).await.unwrap().remove(0);
    t.abandon(&q, &m.lock, NO_WAIT).await.unwrap();
    let m = t.receive(&q, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(m.delivery_count, 2);
    let delay = Duration::from_millis(800);
    let abandoned_at = std::time::Instant::now();
    t.abandon(&q, &m.lock, delay).await.unwrap();
    assert!(
        t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty(),
        "visible before its delay"
    );
    let m = t.receive(&q, 1, patience(&t)).await.unwrap().remove(0);
    assert!(abandoned_at.elapsed() >= delay);
    assert_eq!((m.message_id.as_str(), m.delivery_count), ("m", 3));
    t.complete(&q, &m.lock).await.unwrap();
    assert_eq!(t.depth(&q).await.unwrap().active, 0);
}

pub async fn the_max_delivery_count_dead_letters_by_itself(t: Dyn) {
    let q = queue(&t, Duration::from_millis(300), 2, Duration::from_secs(600)).await;
    // Through abandon: abandoning the last permitted delivery moves the message.
    t.send(&q, &[msg("abandoned")]).await.unwrap();
    for delivery in 1..=2 {
        let m = t.receive(&q, 1, NO_WAIT).await.unwrap().remove(0);
        assert_eq!(m.delivery_count, delivery);
        t.abandon(&q, &m.lock, NO_WAIT).await.unwrap();
    }
    assert!(t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty());
    assert_eq!(t.depth(&q).await.unwrap().dead_lettered, 1);

    // Through lock expiry: nobody settles; once the second lock has expired the message
    // goes to the dead-letter queue instead of being delivered a third time.
    t.send(&q, &[msg("expired")]).await.unwrap();
    for delivery in 1..=2 {
        let m = t.receive(&q, 1, patience(&t)).await.unwrap().remove(0);
        assert_eq!(
            (m.message_id.as_str(), m.delivery_count),
            ("expired", delivery)
        );
    }
    let deadline = std::time::Instant::now() + patience(&t);
    while t.depth(&q).await.unwrap().dead_lettered < 2 {
        assert!(
            t.receive(&q, 1, NO_WAIT).await.unwrap().is_empty(),
            "delivered a third time"
        );
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = t.peek_dead_letters(&q, None, 10).await.unwrap();
    assert_eq!(
        dead.iter()
            .map(|d| d.message_id.as_str())
            .collect::<Vec<_>>(),
        ["abandoned", "expired"]
    );
    for d in &dead {
        assert_eq!(d.reason, MAX_DELIVERY_REASON);
        if caps(&t).browse_dead_letters {
            assert_eq!(d.delivery_count, 2);
        } else {
            // Listing locked them once more.
            assert!(d.delivery_count > 2, "{}", d.delivery_count);
        }
    }
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.active, depth.dead_lettered), (0, 2));
}

pub async fn dead_letters_can_be_listed_taken_and_resubmitted(t: Dyn) {
    // One delivery allowed: where a transport cannot dead-letter explicitly, abandoning
    // moves the message to the dead-letter queue instead.
    let q = queue(&t, Duration::from_secs(30), 1, Duration::from_secs(600)).await;
    t.send(&q, &[msg("a"), msg("b"), msg("c")]).await.unwrap();
    let got = t.receive(&q, 3, NO_WAIT).await.unwrap();
    for m in &got {
        if caps(&t).dead_letter {
            let why = format!("cannot parse {}", m.message_id);
            t.dead_letter(&q, &m.lock, "BadInput", &why).await.unwrap();
        } else {
            assert!(matches!(
                t.dead_letter(&q, &m.lock, "BadInput", "x").await,
                Err(QueueError::Unsupported { .. })
            ));
            t.abandon(&q, &m.lock, NO_WAIT).await.unwrap();
        }
    }
    let dead = t.peek_dead_letters(&q, None, 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    if caps(&t).dead_letter {
        assert_eq!(dead[0].reason, "BadInput");
        assert_eq!(dead[0].description.as_deref(), Some("cannot parse a"));
    } else {
        assert_eq!(dead[0].reason, MAX_DELIVERY_REASON);
    }
    assert_eq!(dead[0].message_id, "a");
    assert_eq!(dead[0].body.as_ref(), b"body of a");
    // Paging by sequence.
    let rest = t
        .peek_dead_letters(&q, Some(dead[0].sequence), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);

    // Resubmit "a": back in the queue with a fresh delivery count, despite deduplication.
    assert_eq!(
        t.resubmit_dead_letters(&q, &[dead[0].sequence])
            .await
            .unwrap(),
        1
    );
    let back = t.receive(&q, 10, patience(&t)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message_id, "a");
    assert_eq!(back[0].delivery_count, 1);
    t.complete(&q, &back[0].lock).await.unwrap();

    // Take "b" and "c" away.
    let taken = t.receive_dead_letters(&q, 10).await.unwrap();
    assert_eq!(
        taken
            .iter()
            .map(|d| d.message_id.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert!(t.peek_dead_letters(&q, None, 10).await.unwrap().is_empty());
    assert_eq!(t.depth(&q).await.unwrap(), Default::default());
}

pub async fn bad_messages_are_refused_whole(t: Dyn) {
    let q = default_queue(&t).await;
    let too_big = OutgoingMessage::new("big", vec![0u8; MAX_BODY_BYTES + 1]);
    let err = t.send(&q, &[msg("fine"), too_big]).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidMessage { message_id, .. } if message_id == "big"),
        "{err}"
    );
    let err = t.send(&q, &[msg("")]).await.unwrap_err();
    assert!(matches!(err, QueueError::InvalidMessage { .. }), "{err}");
    assert_eq!(
        t.depth(&q).await.unwrap().active,
        0,
        "part of a refused batch was stored"
    );

    let unknown = QueueName::parse("no-such-queue").unwrap();
    let err = t.send(&unknown, &[msg("x")]).await.unwrap_err();
    assert!(matches!(err, QueueError::UnknownQueue(_)), "{err}");
    assert!(matches!(
        t.receive(&unknown, 1, NO_WAIT).await,
        Err(QueueError::UnknownQueue(_))
    ));
}

pub async fn a_waiting_receiver_gets_a_later_message(t: Dyn) {
    let q = default_queue(&t).await;
    let receiver = {
        let (t, q) = (t.clone(), q.clone());
        let wait = patience(&t);
        tokio::spawn(async move { t.receive(&q, 1, wait).await })
    };
    tokio::task::yield_now().await;
    t.send(&q, &[msg("late")]).await.unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "the waiting receiver missed the message");
    assert_eq!(got[0].message_id, "late");
}

/// A receive told to stop still hands over what it has claimed, and one stopped while
/// waiting leaves nothing locked: a message sent afterwards is there for the next receiver.
pub async fn a_stopped_receive_leaves_nothing_locked(t: Dyn) {
    let q = default_queue(&t).await;
    t.send(&q, &[msg("waiting")]).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let got = t.receive_until(&q, 1, patience(&t), &stop).await.unwrap();
    assert_eq!(got.len(), 1, "a claim was dropped at the stop");
    t.complete(&q, &got[0].lock).await.unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let receiving = {
        let (t, q, stop) = (t.clone(), q.clone(), stop.clone());
        let wait = patience(&t);
        tokio::spawn(async move { t.receive_until(&q, 1, wait, &stop).await })
    };
    tokio::task::yield_now().await;
    stop.cancel();
    let got = receiving.await.unwrap().unwrap();
    t.send(&q, &[msg("after")]).await.unwrap();
    let mut ids: Vec<String> = got.into_iter().map(|m| m.message_id).collect();
    ids.extend(
        receive_n(&t, &q, 1 - ids.len())
            .await
            .into_iter()
            .map(|m| m.message_id),
    );
    assert_eq!(ids, ["after"]);
}

pub async fn concurrent_receivers_never_share_a_locked_message(t: Dyn) {
    let q = default_queue(&t).await;
    const N: usize = 3_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<_> = chunk.iter().map(|i| msg(&format!("m{i}"))).collect();
        t.send(&q, &batch).await.unwrap();
    }
    let mut tasks = JoinSet::new();
    for worker in 0..12 {
        let (t, q) = (t.clone(), q.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = t.receive(&q, 1 + worker % 4 * 10, NO_WAIT).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                let locks: Vec<_> = got.iter().map(|m| m.lock).collect();
                // Every lock must still be ours: nobody else received these messages.
                assert!(t.complete_batch(&q, &locks).await.unwrap().is_empty());
                mine.extend(got.into_iter().map(|m| m.message_id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(res) = tasks.join_next().await {
        all.extend(res.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        N,
        "some messages were received twice or not at all"
    );
    assert_eq!(distinct.len(), N);
}

/// Instantiates every contract check as a test for one transport. `$make` is an async
/// expression yielding `(guard, Arc<dyn Transport>)`; the guard lives as long as the test.
#[macro_export]
macro_rules! contract_suite {
    ($suite:ident, $make:expr) => {
        $crate::contract_suite!(@suite $suite, run, $make);
    };
    // The transport may be absent (`$make` yields an `Option`): then each check passes.
    (optional $suite:ident, $make:expr) => {
        $crate::contract_suite!(@suite $suite, run_if_present, $make);
    };
    (@suite $suite:ident, $mode:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $crate::contract_suite!(@tests $mode, $make;
                send_and_receive_round_trip, batches_keep_their_order,
                duplicate_ids_are_dropped_within_the_window,
                duplicate_detection_forgets_after_the_window,
                duplicate_detection_can_be_disabled, scheduled_messages_wait_for_their_time,
                a_locked_message_is_hidden_and_settles_once,
                an_expired_lock_releases_the_message_and_its_token, renewing_extends_the_lock,
                abandon_returns_the_message_now_or_after_a_delay,
                the_max_delivery_count_dead_letters_by_itself,
                dead_letters_can_be_listed_taken_and_resubmitted,
                bad_messages_are_refused_whole, a_waiting_receiver_gets_a_later_message,
                a_stopped_receive_leaves_nothing_locked,
                concurrent_receivers_never_share_a_locked_message);
        }
    };
    (@tests $mode:ident, $make:expr; $($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, transport) = $make.await;
                $crate::contract_suite!(@$mode transport, $check);
            }
        )+
    };
    (@run $t:ident, $check:ident) => {
        $crate::queue_contract::$check($t).await
    };
    (@run_if_present $t:ident, $check:ident) => {
        if let Some($t) = $t {
            $crate::queue_contract::$check($t).await
        }
    };
}

async fn postgres(listen_notify: bool) -> (crate::support::TestDb, Dyn) {
    let db = crate::support::TestDb::new().await;
    let t: Dyn = db.transport(listen_notify).await;
    (db, t)
}

contract_suite!(
    postgres_listen_notify,
    crate::queue_contract::postgres(true)
);
contract_suite!(
    postgres_polling_only,
    crate::queue_contract::postgres(false)
);

/// The Service Bus transport against the in-repo double of Service Bus's REST API.
async fn servicebus_double() -> (servicebus_double::ServiceBusDouble, Dyn) {
    let double = servicebus_double::ServiceBusDouble::start(Default::default())
        .await
        .unwrap();
    let cs = jobs_queue::ConnectionString::parse(&double.connection_string()).unwrap();
    let t: Dyn = Arc::new(jobs_queue::ServiceBusTransport::new(&cs).unwrap());
    (double, t)
}

contract_suite!(
    servicebus_on_the_double,
    crate::queue_contract::servicebus_double()
);

/// The Service Bus transport against a real namespace, when
/// `OFFLOAD_SERVICEBUS_CONNECTION_STRING` names one (a key with Manage rights: the suite
/// creates a queue per check). Without it these checks say so and pass: nothing here can
/// reach Azure.
async fn servicebus_namespace() -> ((), Option<Dyn>) {
    let Ok(cs) = std::env::var("OFFLOAD_SERVICEBUS_CONNECTION_STRING") else {
        eprintln!("OFFLOAD_SERVICEBUS_CONNECTION_STRING is not set: skipping the real namespace");
        return ((), None);
    };
    let cs = jobs_queue::ConnectionString::parse(&cs).unwrap();
    let t: Dyn = Arc::new(jobs_queue::ServiceBusTransport::new(&cs).unwrap());
    ((), Some(t))
}

contract_suite!(
    optional servicebus_on_a_namespace,
    crate::queue_contract::servicebus_namespace()
);
