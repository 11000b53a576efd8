//! Webhooks: delivered when the job finishes, signed per Standard Webhooks (checked here by
//! an implementation of our own, not the notifier's), retried after a failure with the
//! receiver's `Retry-After`, every attempt recorded.

use std::time::Duration;

use jobs_core::TenantId;
use jobs_testkit::webhook::{Answer, Receiver, verify};
use jobs_testkit::{Roles, Stack, eventually};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_announced_with_signed_retried_webhooks() {
    let stack = Stack::start(Roles::ALL, "").await;
    // The first call fails with 503 + Retry-After: 1; the retry succeeds.
    let receiver = Receiver::start(vec![Answer::unavailable("1"), Answer::OK]).await;
    let (status, job) = stack
        .post("/v1/jobs", &json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": receiver.url}}))
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let calls = receiver.wait_for_calls(2, Duration::from_secs(60)).await;
    let secret = stack
        .runtime()
        .store
        .webhook_secret(&TenantId::parse("dev").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let (headers, body) = (&call.headers, &call.body);
        assert!(
            verify(&secret, headers, body),
            "bad signature on {headers:?}"
        );
        assert!(!verify(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            headers,
            body
        ));
        assert_eq!(
            headers["webhook-id"], calls[0].headers["webhook-id"],
            "the id is stable across retries"
        );
        let ts: i64 = headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 120);
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["type"], "job.succeeded");
        assert_eq!(payload["data"]["id"], id);
        assert_eq!(payload["data"]["result"]["rows"], 3000);
    }
    // Both attempts are on record once the second one is settled.
    let store = &stack.runtime().store;
    let job_id = id.parse().unwrap();
    let attempts = eventually("two recorded attempts", Duration::from_secs(20), || async {
        let a = store.webhook_attempts(job_id).await.unwrap();
        (a.len() == 2).then_some(a)
    })
    .await;
    assert_eq!(attempts[0].1, Some(503));
    assert_eq!(attempts[1].1, Some(204));
    stack.stop().await;
}

/// On Service Bus (the in-repo double), a receiver asking to be retried in 285,000 years
/// used to overflow the abandon's time arithmetic and panic the notifier's loop: six such
/// jobs stopped all four loops, and every other tenant's webhooks with them. Now the delay
/// is cut to `queue.max_delay_secs`, and the next job's webhook still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_asking_for_centuries_stops_no_one_elses_webhooks() {
    let double = servicebus_double::ServiceBusDouble::start(Default::default())
        .await
        .unwrap();
    let stack = Stack::start(
        Roles::ALL,
        &format!(
            "[queue]\ntransport = \"servicebus\"\nservicebus_connection_string = \"{}\"\n",
            double.connection_string()
        ),
    )
    .await;
    // Every call: 503 with Retry-After: 9000000000000 (about 285,000 years).
    let hostile = Receiver::start(vec![Answer::unavailable("9000000000000")]).await;
    let liveness = jobs_core::supervise::Liveness::process();
    let restarts_before = liveness.restarts("notifier");
    let submit = |url: String| {
        let stack = &stack;
        async move {
            let (status, job) = stack
                .post("/v1/jobs", &json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": url}}))
                .await;
            assert_eq!(status, 202, "{job}");
            job["id"]
                .as_str()
                .unwrap()
                .parse::<jobs_core::JobId>()
                .unwrap()
        }
    };
    let mut hostile_jobs = Vec::new();
    for _ in 0..6 {
        hostile_jobs.push(submit(hostile.url.clone()).await);
    }
    // Every hostile job's first attempt is made and recorded.
    let store = &stack.runtime().store;
    for id in &hostile_jobs {
        let attempts = eventually(
            &format!("job {id}: an attempt"),
            Duration::from_secs(60),
            || async {
                let a = store.webhook_attempts(*id).await.unwrap();
                (!a.is_empty()).then_some(a)
            },
        )
        .await;
        assert_eq!(attempts[0].1, Some(503), "{attempts:?}");
    }
    // Then an ordinary receiver still gets its webhook.
    let ordinary = Receiver::start(Vec::new()).await;
    submit(ordinary.url.clone()).await;
    ordinary.wait_for_calls(1, Duration::from_secs(60)).await;
    assert_eq!(hostile.calls().len(), 6, "each hostile job was tried once");
    // No notifier loop died on the way (a dead one is restarted, and counted).
    assert_eq!(liveness.restarts("notifier"), restarts_before);
    assert!(liveness.is_live(), "{:?}", liveness.failing());
    stack.stop().await;
}

/// A failed delivery's recorded error (what operators and dead letters see) names the
/// receiver without the credentials and the query a URL may carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_errors_do_not_repeat_credentials_or_tokens() {
    let stack = Stack::start(Roles::ALL, "").await;
    // A port nothing listens on: the connection is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://hook-user:pa55word@127.0.0.1:{port}/in?token=t0k3n");
    let (status, job) = stack
        .post("/v1/jobs", &json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": url}}))
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().parse().unwrap();
    let store = &stack.runtime().store;
    let attempts = eventually("a failed attempt", Duration::from_secs(60), || async {
        let a = store.webhook_attempts(id).await.unwrap();
        (!a.is_empty()).then_some(a)
    })
    .await;
    let error = attempts[0].2.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("http://127.0.0.1:{port}/in")),
        "the error names the receiver: {error}"
    );
    for secret in ["pa55word", "hook-user", "t0k3n"] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
    stack.stop().await;
}
