//! Webhooks: delivered when the job finishes, signed per Standard Webhooks (checked here by
//! an implementation of our own, not the notifier's), retried after a failure with the
//! receiver's `Retry-After`, every attempt recorded.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use jobs_cli::Roles;
use jobs_core::TenantId;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::Stack;

#[derive(Default)]
struct Received {
    calls: Vec<(HeaderMap, Vec<u8>)>,
}

/// A webhook receiver on loopback that fails its first call with 503 + Retry-After: 1.
async fn receiver() -> (
    String,
    Arc<Mutex<Received>>,
    tokio::sync::mpsc::Receiver<()>,
) {
    let got = Arc::new(Mutex::new(Received::default()));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = (got.clone(), tx);
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State((got, tx)): axum::extract::State<(
                    Arc<Mutex<Received>>,
                    tokio::sync::mpsc::Sender<()>,
                )>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let n = {
                        let mut g = got.lock().unwrap();
                        g.calls.push((headers, body.to_vec()));
                        g.calls.len()
                    };
                    let _ = tx.send(()).await;
                    if n == 1 {
                        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response()
                    } else {
                        StatusCode::NO_CONTENT.into_response()
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got, rx)
}

/// Standard Webhooks verification, written from the specification.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_announced_with_signed_retried_webhooks() {
    let stack = Stack::start(Roles::ALL, "").await;
    let (url, got, mut calls) = receiver().await;
    let (status, job) = stack
        .post("/v1/jobs", &json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": url}}))
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        tokio::time::timeout(std::time::Duration::from_secs(60), calls.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let secret = stack
        .runtime()
        .store
        .webhook_secret(&TenantId::parse("dev").unwrap())
        .await
        .unwrap()
        .unwrap();
    let calls = std::mem::take(&mut got.lock().unwrap().calls);
    assert_eq!(calls.len(), 2);
    for (headers, body) in &calls {
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
            headers["webhook-id"], calls[0].0["webhook-id"],
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let attempts = loop {
        let a = store.webhook_attempts(job_id).await.unwrap();
        if a.len() == 2 {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(attempts[0].1, Some(503));
    assert_eq!(attempts[1].1, Some(204));
    stack.stop().await;
}

/// A receiver on loopback that answers every call `503` with `Retry-After: 9000000000000`
/// (about 285,000 years); counts its calls.
async fn hostile_receiver() -> (String, Arc<Mutex<u32>>) {
    let calls = Arc::new(Mutex::new(0u32));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(calls): axum::extract::State<Arc<Mutex<u32>>>| async move {
                    *calls.lock().unwrap() += 1;
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "9000000000000")],
                    )
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
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
    let (hostile, hostile_calls) = hostile_receiver().await;
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
        hostile_jobs.push(submit(hostile.clone()).await);
    }
    // Every hostile job's first attempt is made and recorded.
    let store = &stack.runtime().store;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for id in &hostile_jobs {
        loop {
            let attempts = store.webhook_attempts(*id).await.unwrap();
            if !attempts.is_empty() {
                assert_eq!(attempts[0].1, Some(503), "{attempts:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "job {id}: no attempt");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Then an ordinary receiver still gets its webhook.
    let (url, _, mut calls) = receiver().await;
    submit(url).await;
    tokio::time::timeout(std::time::Duration::from_secs(60), calls.recv())
        .await
        .expect("the next job's webhook never came: the notifier's loops are stuck")
        .unwrap();
    assert_eq!(
        *hostile_calls.lock().unwrap(),
        6,
        "each hostile job was tried once"
    );
    // No notifier loop died on the way (a dead one is restarted, and counted).
    assert_eq!(liveness.restarts("notifier"), restarts_before);
    assert!(liveness.is_live(), "{:?}", liveness.failing());
    stack.stop().await;
}
