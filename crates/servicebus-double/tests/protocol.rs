//! Drives the double over loopback HTTP the way a Service Bus REST client would, signing every
//! request with a SAS token built here from the documented recipe.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use servicebus_double::{DoubleOptions, ServiceBusDouble};
use sha2::Sha256;

const BATCH: &str = "application/vnd.microsoft.servicebus.json";

/// Builds `SharedAccessSignature sr=..&sig=..&se=..&skn=..`: the signature is
/// base64(HMAC-SHA256(key bytes, url-encoded resource + "\n" + expiry)).
fn sas_token(resource: &str, key_name: &str, key: &str, expiry: i64) -> String {
    let sr: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(signature.as_bytes()).collect();
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={key_name}")
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

struct Harness {
    double: ServiceBusDouble,
    http: reqwest::Client,
    options: DoubleOptions,
}

impl Harness {
    async fn start() -> Self {
        let options = DoubleOptions::default();
        let double = ServiceBusDouble::start(options.clone()).await.unwrap();
        Self {
            double,
            http: reqwest::Client::new(),
            options,
        }
    }

    /// A signed request to `{endpoint}/{path}`.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}/{path}", self.double.endpoint());
        let token = sas_token(
            &url,
            &self.options.key_name,
            &self.options.key,
            in_an_hour(),
        );
        self.http
            .request(method, url)
            .header("Authorization", token)
    }

    async fn create_queue(&self, name: &str, settings: &str) {
        let response = self
            .request(Method::PUT, name)
            .body(queue_entry(settings))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn send_batch(&self, queue: &str, batch: Value) -> StatusCode {
        self.request(Method::POST, &format!("{queue}/messages"))
            .header("Content-Type", BATCH)
            .body(batch.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn peek_lock(&self, entity: &str, timeout: u64) -> Response {
        self.request(
            Method::POST,
            &format!("{entity}/messages/head?timeout={timeout}&api-version=2015-01"),
        )
        .send()
        .await
        .unwrap()
    }

    /// (MessageCount, active, dead-lettered, scheduled) from `GET /{queue}`.
    async fn counts(&self, queue: &str) -> [u64; 4] {
        let response = self.request(Method::GET, queue).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let xml = response.text().await.unwrap();
        [
            "MessageCount",
            "d2p1:ActiveMessageCount",
            "d2p1:DeadLetterMessageCount",
            "d2p1:ScheduledMessageCount",
        ]
        .map(|tag| element(&xml, tag).parse().unwrap())
    }

    /// Waits until the double has seen `n` requests: the way to know a long poll has arrived.
    async fn wait_for_requests(&self, n: u64) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while self.double.requests() < n {
            assert!(Instant::now() < give_up, "the request never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn queue_entry(settings: &str) -> String {
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{settings}</QueueDescription></content></entry>"#
    )
}

/// The text of the first `<tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
    let end = start + xml[start..].find("</").unwrap();
    &xml[start..end]
}

fn broker_properties(response: &Response) -> Value {
    let header = response.headers()["BrokerProperties"].to_str().unwrap();
    serde_json::from_str(header).unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn requests_need_a_valid_shared_access_signature() {
    let h = Harness::start().await;
    let url = format!("{}/jobs", h.double.endpoint());
    let key_name = &h.options.key_name;
    let cases = [
        (None, "missing"),
        (Some("Bearer x".to_owned()), "malformed"),
        (
            Some(sas_token(&url, key_name, "wrong-key", in_an_hour())),
            "signature",
        ),
        (
            Some(sas_token(&url, "someone", &h.options.key, in_an_hour())),
            "key name",
        ),
        (
            Some(sas_token(&url, key_name, &h.options.key, 1_000)),
            "expired",
        ),
    ];
    for (token, problem) in cases {
        let mut request = h.http.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{problem}");
        assert!(
            response.text().await.unwrap().contains(problem),
            "{problem}"
        );
    }
    let signed = h.request(Method::GET, "jobs").send().await.unwrap();
    assert_eq!(
        signed.status(),
        StatusCode::NOT_FOUND,
        "authorized, but no such queue"
    );
    assert_eq!(signed.text().await.unwrap(), "queue not found");
}

#[tokio::test]
async fn queues_are_created_updated_read_and_deleted() {
    let h = Harness::start().await;
    let settings = "<LockDuration>PT0.5S</LockDuration><RequiresDuplicateDetection>true</RequiresDuplicateDetection><MaxDeliveryCount>3</MaxDeliveryCount>";
    let created = h
        .request(Method::PUT, "jobs?api-version=2021-05")
        .body(queue_entry(settings))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        header(&created, "content-type"),
        Some("application/atom+xml;type=entry;charset=utf-8")
    );
    let xml = created.text().await.unwrap();
    assert_eq!(element(&xml, "title type=\"text\""), "jobs");
    assert_eq!(element(&xml, "LockDuration"), "PT0.5S");
    assert_eq!(
        element(&xml, "DuplicateDetectionHistoryTimeWindow"),
        "PT10M"
    );
    assert_eq!(element(&xml, "MaxDeliveryCount"), "3");

    let again = h
        .request(Method::PUT, "jobs")
        .body(queue_entry(""))
        .send()
        .await;
    assert_eq!(again.unwrap().status(), StatusCode::CONFLICT);
    let update = h
        .request(Method::PUT, "jobs")
        .header("If-Match", "*")
        .body(queue_entry("<LockDuration>PT45S</LockDuration>"))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), StatusCode::OK);
    let flip = h
        .request(Method::PUT, "jobs")
        .header("If-Match", "*")
        .body(queue_entry(
            "<RequiresDuplicateDetection>false</RequiresDuplicateDetection>",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(flip.status(), StatusCode::BAD_REQUEST);
    assert!(
        flip.text()
            .await
            .unwrap()
            .contains("RequiresDuplicateDetection")
    );
    let bad = h
        .request(Method::PUT, "other")
        .body(queue_entry("<LockDuration>PT10M</LockDuration>"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("LockDuration"));

    let xml = h
        .request(Method::GET, "jobs")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(element(&xml, "LockDuration"), "PT45S");
    assert_eq!(element(&xml, "RequiresDuplicateDetection"), "true");
    assert_eq!(element(&xml, "MaxDeliveryCount"), "3");
    assert_eq!(h.counts("jobs").await, [0, 0, 0, 0]);

    let invalid = h.request(Method::GET, "no%20spaces").send().await.unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let deleted = h.request(Method::DELETE, "jobs").send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = h.request(Method::DELETE, "jobs").send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_batch_is_peek_locked_and_completed() {
    let h = Harness::start().await;
    h.create_queue("jobs", "").await;
    let batch = json!([
        {"Body": "first", "BrokerProperties": {"MessageId": "m1"},
         "UserProperties": {"traceparent": "00-abc-01", "attempt": 1}},
        {"Body": "second"}
    ]);
    assert_eq!(h.send_batch("jobs", batch).await, StatusCode::CREATED);
    assert_eq!(h.counts("jobs").await, [2, 2, 0, 0]);

    let first = h.peek_lock("jobs", 0).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let props = broker_properties(&first);
    assert_eq!(props["MessageId"], "m1");
    assert_eq!(props["DeliveryCount"], 1);
    assert_eq!(props["SequenceNumber"], 1);
    assert_eq!(props["State"], "Active");
    assert!(props["LockedUntilUtc"].as_str().unwrap().ends_with(" GMT"));
    let token = props["LockToken"].as_str().unwrap().to_owned();
    let location = header(&first, "location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("{}/jobs/messages/1/{token}", h.double.endpoint())
    );
    assert_eq!(header(&first, "traceparent"), Some("\"00-abc-01\""));
    assert_eq!(header(&first, "attempt"), Some("\"1\""));
    assert_eq!(first.text().await.unwrap(), "first");
    assert_eq!(
        h.counts("jobs").await,
        [2, 2, 0, 0],
        "locked is still active"
    );

    let settle_path = location
        .strip_prefix(&format!("{}/", h.double.endpoint()))
        .unwrap();
    let completed = h.request(Method::DELETE, settle_path).send().await.unwrap();
    assert_eq!(completed.status(), StatusCode::OK);
    let twice = h.request(Method::DELETE, &format!("jobs/messages/1/{token}"));
    let twice = twice.send().await.unwrap();
    assert_eq!(twice.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        twice.text().await.unwrap(),
        "lock lost or message not found"
    );

    let second = h
        .request(Method::DELETE, "jobs/messages/head?timeout=0")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        broker_properties(&second)["MessageId"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    assert_eq!(second.text().await.unwrap(), "second");

    let started = Instant::now();
    assert_eq!(
        h.peek_lock("jobs", 0).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout=0 answers at once"
    );
    assert_eq!(h.counts("jobs").await, [0, 0, 0, 0]);
    let unknown = h.request(Method::DELETE, &format!("nope/messages/1/{token}"));
    assert_eq!(unknown.send().await.unwrap().status(), StatusCode::GONE);
}

#[tokio::test]
async fn single_sends_carry_properties_dedupe_and_schedules() {
    let h = Harness::start().await;
    h.create_queue(
        "jobs",
        "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>",
    )
    .await;
    for _ in 0..2 {
        let sent = h
            .request(Method::POST, "jobs/messages")
            .header("BrokerProperties", r#"{"MessageId":"once"}"#)
            .header("Content-Type", "text/plain")
            .header("traceparent", "\"00-def-01\"")
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::CREATED);
    }
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let scheduled = json!([{"Body": "later", "BrokerProperties": {
        "MessageId": "later",
        "ScheduledEnqueueTimeUtc": later.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }}]);
    assert_eq!(h.send_batch("jobs", scheduled).await, StatusCode::CREATED);
    assert_eq!(h.counts("jobs").await, [2, 1, 0, 1]);

    let received = h.peek_lock("jobs", 0).await;
    assert_eq!(broker_properties(&received)["MessageId"], "once");
    assert_eq!(header(&received, "traceparent"), Some("\"00-def-01\""));
    assert_eq!(header(&received, "content-type"), Some("text/plain"));
    assert_eq!(
        h.peek_lock("jobs", 0).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn bad_sends_are_refused_whole() {
    let h = Harness::start().await;
    h.create_queue("jobs", "").await;
    let too_big = json!([{"Body": "x".repeat(200 * 1024)}, {"Body": "x".repeat(100 * 1024)}]);
    assert_eq!(
        h.send_batch("jobs", too_big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let malformed = h
        .request(Method::POST, "jobs/messages")
        .header("Content-Type", BATCH)
        .body("[{\"Body\": \"ok\"}, {\"Body\": 5}]")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let to_dlq = h
        .request(Method::POST, "jobs/%24DeadLetterQueue/messages")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(to_dlq.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.send_batch("nope", json!([])).await, StatusCode::GONE);
    assert_eq!(h.counts("jobs").await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_later_send() {
    let h = Harness::start().await;
    h.create_queue("jobs", "").await;
    let seen = h.double.requests();
    let started = Instant::now();
    let receive = h.peek_lock("jobs", 5);
    let send = async {
        h.wait_for_requests(seen + 1).await;
        h.send_batch("jobs", json!([{"Body": "wake up"}])).await
    };
    let (received, sent) = tokio::join!(receive, send);
    assert_eq!(sent, StatusCode::CREATED);
    assert_eq!(received.status(), StatusCode::CREATED);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woken, not timed out"
    );
    assert_eq!(received.text().await.unwrap(), "wake up");
}

#[tokio::test]
async fn expired_locks_redeliver_then_dead_letter() {
    let h = Harness::start().await;
    h.create_queue(
        "jobs",
        "<LockDuration>PT1S</LockDuration><MaxDeliveryCount>2</MaxDeliveryCount>",
    )
    .await;
    let batch = json!([{"Body": "poison", "UserProperties": {"traceparent": "00-abc-01"}}]);
    assert_eq!(h.send_batch("jobs", batch).await, StatusCode::CREATED);
    let first = h.peek_lock("jobs", 0).await;
    assert_eq!(broker_properties(&first)["DeliveryCount"], 1);

    // The waiting receiver wakes when the lock expires, with nothing else happening.
    let second = h.peek_lock("jobs", 5).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let props = broker_properties(&second);
    assert_eq!(props["DeliveryCount"], 2);
    let token = props["LockToken"].as_str().unwrap();

    // Renew once, then abandon: the last attempt is used up, so it is dead-lettered.
    let renewed = h
        .request(Method::POST, &format!("jobs/messages/1/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), StatusCode::OK);
    assert_eq!(broker_properties(&renewed)["LockToken"], token);
    let abandoned = h
        .request(Method::PUT, &format!("jobs/messages/1/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(abandoned.status(), StatusCode::OK);
    assert_eq!(h.counts("jobs").await, [1, 0, 1, 0]);

    let dead = h.peek_lock("jobs/%24DeadLetterQueue", 0).await;
    assert_eq!(dead.status(), StatusCode::CREATED);
    let props = broker_properties(&dead);
    assert_eq!(props["SequenceNumber"], 1);
    assert_eq!(props["DeliveryCount"], 3);
    assert_eq!(
        header(&dead, "DeadLetterReason"),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    assert_eq!(
        header(&dead, "DeadLetterErrorDescription"),
        Some("\"Message could not be consumed after 2 delivery attempts.\"")
    );
    assert_eq!(header(&dead, "traceparent"), Some("\"00-abc-01\""));
    let location = header(&dead, "location").unwrap().to_owned();
    let token = props["LockToken"].as_str().unwrap();
    assert!(location.ends_with(&format!("/jobs/$DeadLetterQueue/messages/1/{token}")));
    let completed = h
        .request(
            Method::DELETE,
            &format!("jobs/$DeadLetterQueue/messages/1/{token}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), StatusCode::OK);
    assert_eq!(h.counts("jobs").await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn an_expired_lock_is_dead_lettered_lazily() {
    let h = Harness::start().await;
    h.create_queue(
        "jobs",
        "<LockDuration>PT1S</LockDuration><MaxDeliveryCount>1</MaxDeliveryCount>",
    )
    .await;
    h.send_batch("jobs", json!([{"Body": "once"}])).await;
    assert_eq!(h.peek_lock("jobs", 0).await.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(h.counts("jobs").await, [1, 0, 1, 0]);
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_keeps_the_state() {
    let mut h = Harness::start().await;
    h.create_queue("jobs", "").await;
    h.create_queue("idle", "").await;
    h.send_batch("jobs", json!([{"Body": "survives"}])).await;

    // A long poll in flight when the double stops is cut off, not answered.
    let seen = h.double.requests();
    let long_poll = h.peek_lock_raw("idle", 30);
    let waiting = tokio::spawn(long_poll);
    h.wait_for_requests(seen + 1).await;
    let started = Instant::now();
    h.double.stop().await;
    let cut = waiting.await.unwrap();
    assert!(cut.is_err(), "the in-flight long poll fails: {cut:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let refused = h.request(Method::GET, "jobs").send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");

    h.double.restart().await.unwrap();
    let received = h.peek_lock("jobs", 0).await;
    assert_eq!(received.status(), StatusCode::CREATED);
    assert_eq!(received.text().await.unwrap(), "survives");
}

impl Harness {
    /// A peek-lock request as a `'static` future, for spawning.
    fn peek_lock_raw(
        &self,
        entity: &str,
        timeout: u64,
    ) -> impl Future<Output = reqwest::Result<Response>> + Send + 'static {
        self.request(
            Method::POST,
            &format!("{entity}/messages/head?timeout={timeout}"),
        )
        .send()
    }
}

#[tokio::test]
async fn injected_failures_answer_503_and_change_nothing() {
    let h = Harness::start().await;
    h.create_queue("jobs", "").await;
    h.double.fail_next(2);
    assert_eq!(
        h.send_batch("jobs", json!([{"Body": "lost"}])).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let unauthenticated = h
        .http
        .get(h.double.endpoint() + "/jobs")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unauthenticated.text().await.unwrap(), "injected failure");
    assert_eq!(h.counts("jobs").await, [0, 0, 0, 0]);
    assert_eq!(h.double.requests(), 4);
}
