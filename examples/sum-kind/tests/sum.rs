//! The example kind runs through the whole stack (API → enqueuer → workers → finalizer) on
//! real Postgres, next to the built-in kinds.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::testing::TestDb;
use jobs_queue::runtime::Runtime;
use serde_json::{Value, json};

const KEY: &str = "sum-test-key";

async fn start() -> (TestDb, jobs_cli::Services, reqwest::Client) {
    let db = TestDb::new().await;
    let root = std::env::temp_dir().join(format!("sum-kind-{}", std::process::id()));
    let cfg = db.config(&[&format!(
        "[auth]\ndev_api_key = \"{KEY}\"\n[queue]\npoll_interval_ms = 50\n[blob]\nroot = \"{}\"\n",
        root.display()
    )]);
    let runtime = Runtime::start(Arc::new(cfg)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let services =
        jobs_cli::Services::start_with(runtime, listener, jobs_cli::Roles::ALL, sum_kind::kinds())
            .await
            .unwrap();
    (db, services, reqwest::Client::new())
}

async fn post(http: &reqwest::Client, api: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_kind_is_planned_processed_and_finalized() {
    let (_db, services, http) = start().await;
    let api = services.api_url.clone();
    let n: u128 = 1_000_000;
    let (status, job) = post(
        &http,
        &api,
        json!({"kind": "example.sum", "example.sum": {"from": 1, "to": 1_000_000, "chunk": 75_000}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job: Value = http
            .get(format!("{api}/v1/jobs/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let expected = n * (n + 1) * (2 * n + 1) / 6;
    assert_eq!(job["result"]["sum"], expected.to_string());
    assert_eq!(job["result"]["ranges"], 14);
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_parameters_are_checked_with_the_field_named() {
    let (_db, services, http) = start().await;
    let api = services.api_url.clone();
    for (params, field) in [
        (json!({"from": 5, "to": 1}), "example.sum.to"),
        (json!({"from": 1}), "example.sum.to"),
        (
            json!({"from": 1, "to": 10, "chunk": 0}),
            "example.sum.chunk",
        ),
        (
            json!({"from": 1, "to": 1_000_000, "chunk": 1}),
            "example.sum.chunk",
        ),
        (json!({"from": -1, "to": 10}), "example.sum.from"),
        (
            json!({"from": 1, "to": 10, "extra": true}),
            "example.sum.extra",
        ),
    ] {
        let (status, body) = post(
            &http,
            &api,
            json!({"kind": "example.sum", "example.sum": params}),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Unknown kinds name the registered ones.
    let (status, body) = post(&http, &api, json!({"kind": "example.nope"})).await;
    assert_eq!(status, 422);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("example.sum") && message.contains("export"),
        "{message}"
    );
    services.stop().await;
}
