//! Queue semantics at explicit instants.

use chrono::TimeZone;

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn message(id: &str) -> NewMessage {
    NewMessage {
        message_id: id.to_owned(),
        body: Bytes::from(format!("body of {id}")),
        content_type: None,
        user_properties: vec![("traceparent".to_owned(), "00-abc-01".to_owned())],
        scheduled_enqueue_time: None,
    }
}

fn queue_with(description: QueueDescription) -> (Namespace, QueueName) {
    let mut ns = Namespace::default();
    let name = QueueName::parse("jobs").unwrap();
    assert_eq!(
        ns.put_queue(&name, &description, false),
        Ok(PutOutcome::Created)
    );
    (ns, name)
}

/// A queue with a 30 s lock and the given `MaxDeliveryCount`.
fn queue(max_delivery_count: u32) -> (Namespace, QueueName) {
    queue_with(QueueDescription {
        lock_duration: Some(Duration::from_secs(30)),
        max_delivery_count: Some(max_delivery_count),
        ..QueueDescription::default()
    })
}

fn peek(q: &mut Queue, at: DateTime<Utc>) -> Option<StoredMessage> {
    q.receive(EntityKind::Main, ReceiveMode::PeekLock, at)
}

fn token(m: &StoredMessage) -> Uuid {
    m.lock.unwrap().token
}

#[test]
fn queue_names_are_checked() {
    assert!(QueueName::parse("a.b-c_D9").is_some());
    assert!(QueueName::parse(&"x".repeat(100)).is_some());
    for bad in ["", "a/b", "a b", "$DeadLetterQueue", "é", &"x".repeat(101)] {
        assert!(QueueName::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn put_creates_then_conflicts_then_updates_but_never_flips_dedupe() {
    let (mut ns, name) = queue(10);
    let change = QueueDescription {
        max_delivery_count: Some(3),
        ..QueueDescription::default()
    };
    assert_eq!(
        ns.put_queue(&name, &change, false),
        Err(StateError::QueueExists)
    );
    assert_eq!(ns.put_queue(&name, &change, true), Ok(PutOutcome::Updated));
    let settings = ns.queue(&name).unwrap().settings().clone();
    assert_eq!(settings.max_delivery_count, 3);
    assert_eq!(settings.lock_duration, Duration::from_secs(30), "kept");
    let flip = QueueDescription {
        requires_duplicate_detection: Some(true),
        ..QueueDescription::default()
    };
    assert_eq!(
        ns.put_queue(&name, &flip, true),
        Err(StateError::DuplicateDetectionImmutable)
    );
    assert_eq!(ns.delete_queue(&name), Ok(()));
    assert_eq!(ns.queue(&name).err(), Some(StateError::QueueNotFound));
}

#[test]
fn duplicates_are_dropped_within_the_window_of_first_acceptance() {
    let (mut ns, name) = queue_with(QueueDescription {
        requires_duplicate_detection: Some(true),
        duplicate_detection_window: Some(Duration::from_secs(600)),
        ..QueueDescription::default()
    });
    let q = ns.queue(&name).unwrap();
    // Within one batch the first wins.
    assert_eq!(
        q.send(vec![message("a"), message("a"), message("b")], t0()),
        2
    );
    // Still a duplicate after the message is gone, and a dropped resend does not extend it.
    let first = q
        .receive(EntityKind::Main, ReceiveMode::ReceiveAndDelete, t0())
        .unwrap();
    assert_eq!(first.message_id, "a");
    assert_eq!(q.send(vec![message("a")], t0() + secs(599)), 0);
    assert_eq!(q.send(vec![message("a")], t0() + secs(600)), 1);
    assert_eq!(q.send(vec![message("a")], t0() + secs(1199)), 0);
    assert_eq!(q.counts(t0() + secs(1199)).active, 2);
}

#[test]
fn without_duplicate_detection_every_message_is_stored() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    assert_eq!(q.send(vec![message("a"), message("a")], t0()), 2);
    assert_eq!(q.send(vec![message("a")], t0()), 1);
}

#[test]
fn scheduled_messages_are_invisible_until_their_time() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    let at = t0() + secs(60);
    let scheduled = NewMessage {
        scheduled_enqueue_time: Some(at),
        ..message("later")
    };
    q.send(vec![scheduled, message("now")], t0());
    assert_eq!(
        q.counts(t0()),
        Counts {
            active: 1,
            dead_letter: 0,
            scheduled: 1
        }
    );
    let now = q.receive(EntityKind::Main, ReceiveMode::ReceiveAndDelete, t0());
    assert_eq!(now.unwrap().message_id, "now");
    assert_eq!(peek(q, t0() + secs(59)), None);
    assert_eq!(
        q.next_change(),
        Some(at),
        "when a receiver should look again"
    );
    // Sequence numbers are given at send time, so once visible it comes first.
    q.send(vec![message("after")], t0() + secs(1));
    let later = peek(q, at).unwrap();
    assert_eq!(
        (later.message_id.as_str(), later.sequence_number),
        ("later", 1)
    );
    assert_eq!(later.enqueued_at, at);
    assert_eq!(later.scheduled_enqueue_time, Some(at));
    assert_eq!(q.counts(at).scheduled, 0);
}

#[test]
fn a_past_schedule_is_visible_at_once() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    let past = NewMessage {
        scheduled_enqueue_time: Some(t0() - secs(5)),
        ..message("past")
    };
    q.send(vec![past], t0());
    assert_eq!(q.counts(t0()).scheduled, 0);
    assert_eq!(peek(q, t0()).unwrap().enqueued_at, t0());
}

#[test]
fn an_expired_lock_redelivers_with_a_higher_delivery_count() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a")], t0());
    let first = peek(q, t0()).unwrap();
    assert_eq!(first.delivery_count, 1);
    assert_eq!(first.lock.unwrap().locked_until, t0() + secs(30));
    assert_eq!(peek(q, t0() + secs(29)), None, "still locked");
    assert_eq!(
        q.counts(t0() + secs(29)).active,
        1,
        "locked messages are active"
    );
    assert_eq!(q.next_change(), Some(t0() + secs(30)));
    let second = peek(q, t0() + secs(30)).unwrap();
    assert_eq!(second.sequence_number, first.sequence_number);
    assert_eq!(second.delivery_count, 2);
    assert_ne!(token(&second), token(&first));
}

#[test]
fn stale_wrong_and_reused_tokens_are_refused() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a")], t0());
    let first = peek(q, t0()).unwrap();
    let seq = first.sequence_number.to_string();
    let main = EntityKind::Main;
    let lost = Err(StateError::LockLost);
    assert_eq!(q.complete(main, &seq, Uuid::new_v4(), t0()), lost);
    assert_eq!(q.complete(main, "999", token(&first), t0()), lost);
    // Expired: the old token is refused even before anyone else takes the message...
    assert_eq!(q.complete(main, &seq, token(&first), t0() + secs(30)), lost);
    // ...and after.
    let second = peek(q, t0() + secs(31)).unwrap();
    assert_eq!(
        q.renew_lock(main, &seq, token(&first), t0() + secs(32))
            .err(),
        Some(StateError::LockLost)
    );
    assert_eq!(q.unlock(main, &seq, token(&first), t0() + secs(32)), lost);
    // The current holder settles it, by message id this time; only once.
    assert_eq!(
        q.complete(main, "a", token(&second), t0() + secs(32)),
        Ok(())
    );
    assert_eq!(q.complete(main, "a", token(&second), t0() + secs(32)), lost);
    assert_eq!(q.counts(t0() + secs(32)).total(), 0);
}

#[test]
fn renewing_extends_the_lock_from_now() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a")], t0());
    let m = peek(q, t0()).unwrap();
    let seq = m.sequence_number.to_string();
    let renewed = q
        .renew_lock(EntityKind::Main, &seq, token(&m), t0() + secs(20))
        .unwrap();
    assert_eq!(renewed.lock.unwrap().locked_until, t0() + secs(50));
    assert_eq!(token(&renewed), token(&m), "renewing keeps the token");
    assert_eq!(
        peek(q, t0() + secs(40)),
        None,
        "the old expiry passed, still locked"
    );
    assert_eq!(
        q.complete(EntityKind::Main, &seq, token(&m), t0() + secs(45)),
        Ok(())
    );
}

#[test]
fn unlocking_makes_the_message_receivable_at_once() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a")], t0());
    let m = peek(q, t0()).unwrap();
    let seq = m.sequence_number.to_string();
    assert_eq!(
        q.unlock(EntityKind::Main, &seq, token(&m), t0() + secs(1)),
        Ok(())
    );
    let again = peek(q, t0() + secs(1)).unwrap();
    assert_eq!(again.delivery_count, 2);
}

#[test]
fn the_last_delivery_attempt_dead_letters_with_a_reason() {
    let (mut ns, name) = queue(2);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a"), message("b")], t0());
    // "a": two lock expiries.
    let a1 = peek(q, t0()).unwrap();
    assert_eq!(a1.message_id, "a");
    let b1 = peek(q, t0()).unwrap();
    let a2 = peek(q, t0() + secs(30)).unwrap();
    assert_eq!((a2.message_id.as_str(), a2.delivery_count), ("a", 2));
    // "b": expired once, then abandoned on its last attempt.
    let b2 = peek(q, t0() + secs(30)).unwrap();
    assert_eq!((b2.message_id.as_str(), b2.delivery_count), ("b", 2));
    let b_seq = b1.sequence_number.to_string();
    assert_eq!(
        q.unlock(EntityKind::Main, &b_seq, token(&b2), t0() + secs(31)),
        Ok(())
    );
    assert_eq!(q.counts(t0() + secs(31)).dead_letter, 1);
    assert_eq!(
        peek(q, t0() + secs(60)),
        None,
        "nothing left in the main entity"
    );
    assert_eq!(
        q.counts(t0() + secs(60)),
        Counts {
            active: 0,
            dead_letter: 2,
            scheduled: 0
        }
    );

    let dead = q
        .receive(
            EntityKind::DeadLetter,
            ReceiveMode::PeekLock,
            t0() + secs(60),
        )
        .unwrap();
    assert_eq!(dead.message_id, "b", "dead-lettered first");
    assert_eq!(
        dead.sequence_number, 1,
        "numbered by the dead-letter entity"
    );
    assert_eq!(dead.enqueued_sequence_number, b1.sequence_number);
    assert_eq!(dead.body, Bytes::from("body of b"));
    assert_eq!(dead.enqueued_at, t0());
    assert_eq!(dead.delivery_count, 3, "kept, plus this delivery");
    let property = |key: &str| {
        dead.user_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(property("traceparent"), Some("00-abc-01"));
    assert_eq!(
        property("DeadLetterReason"),
        Some("MaxDeliveryCountExceeded")
    );
    assert_eq!(
        property("DeadLetterErrorDescription"),
        Some("Message could not be consumed after 2 delivery attempts.")
    );
    let a_dead = q
        .receive(
            EntityKind::DeadLetter,
            ReceiveMode::ReceiveAndDelete,
            t0() + secs(60),
        )
        .unwrap();
    assert_eq!(
        (a_dead.message_id.as_str(), a_dead.sequence_number),
        ("a", 2)
    );
    assert_eq!(a1.sequence_number, a_dead.enqueued_sequence_number);
}

#[test]
fn dead_letter_locks_expire_without_further_dead_lettering() {
    let (mut ns, name) = queue(1);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a")], t0());
    peek(q, t0()).unwrap();
    let dlq = EntityKind::DeadLetter;
    let first = q
        .receive(dlq, ReceiveMode::PeekLock, t0() + secs(30))
        .unwrap();
    assert_eq!(q.receive(dlq, ReceiveMode::PeekLock, t0() + secs(59)), None);
    let again = q
        .receive(dlq, ReceiveMode::PeekLock, t0() + secs(60))
        .unwrap();
    assert_eq!(again.sequence_number, first.sequence_number);
    let seq = again.sequence_number.to_string();
    assert_eq!(q.unlock(dlq, &seq, token(&again), t0() + secs(61)), Ok(()));
    let third = q
        .receive(dlq, ReceiveMode::PeekLock, t0() + secs(61))
        .unwrap();
    assert_eq!(
        q.complete(dlq, &seq, token(&third), t0() + secs(62)),
        Ok(())
    );
    assert_eq!(q.counts(t0() + secs(62)).total(), 0);
}

#[test]
fn receive_and_delete_takes_the_lowest_sequence_number() {
    let (mut ns, name) = queue(10);
    let q = ns.queue(&name).unwrap();
    q.send(vec![message("a"), message("b")], t0());
    let mode = ReceiveMode::ReceiveAndDelete;
    let a = q.receive(EntityKind::Main, mode, t0()).unwrap();
    assert_eq!(
        (a.message_id.as_str(), a.delivery_count, a.lock),
        ("a", 1, None)
    );
    assert_eq!(
        q.receive(EntityKind::Main, mode, t0()).unwrap().message_id,
        "b"
    );
    assert_eq!(q.receive(EntityKind::Main, mode, t0()), None);
    assert_eq!(q.next_change(), None);
}
