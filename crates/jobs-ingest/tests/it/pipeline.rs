//! Ingest jobs end to end against the mock source API: every partitioning and pagination
//! style, transient failures, throttling, secrets, retrying failed partitions, and the
//! adaptive concurrency limit.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use jobs_core::sqlx;
use jobs_testkit::Roles;
use mock_source::{MockSource, MockSourceOptions};
use serde_json::{Value, json};

use crate::front::Front;
use jobs_testkit::Stack;

fn quick(records: u64) -> MockSourceOptions {
    MockSourceOptions {
        records,
        latency: Duration::from_millis(2),
        ..Default::default()
    }
}

/// A `[sources.{name}]` table for `url`: small pages and partitions, quick retries, and
/// the `extra` keys (which replace those).
fn source(name: &str, url: &str, extra: &str) -> String {
    let mut table = format!("[sources.{name}]\nbase_url = \"{url}\"\n{extra}\n");
    for default in [
        "page_size = 40",
        "partition_size = 350",
        "retry_base_ms = 10",
        "retry_cap_secs = 2",
    ] {
        let key = default.split(' ').next().unwrap_or_default();
        if !extra.lines().any(|l| l.starts_with(key)) {
            table.push_str(default);
            table.push('\n');
        }
    }
    table
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn submit(stack: &Stack, ingest: Value) -> String {
    let (status, job) = stack
        .post("/v1/jobs", &json!({"kind": "ingest", "ingest": ingest}))
        .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// Every record of the job's NDJSON pages, in no particular order.
fn ingested(stack: &Stack, source: &str, job: &str) -> Vec<Value> {
    let dir = stack.blob_root.join("ingest").join(source).join(job);
    let mut out = Vec::new();
    for partition in std::fs::read_dir(&dir).unwrap() {
        let partition = partition.unwrap().path();
        if !partition.is_dir() {
            continue;
        }
        for page in std::fs::read_dir(&partition).unwrap() {
            let page = page.unwrap().path();
            let name = page.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("page-") && name.ends_with(".ndjson"),
                "{name}"
            );
            for line in std::fs::read_to_string(&page).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

/// The records are exactly the mock's records `expected`, each once.
fn assert_exactly(records: &[Value], opts: &MockSourceOptions, expected: &BTreeSet<u64>) {
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicated records");
    assert_eq!(&unique, expected, "lost or extra records");
    for r in records {
        assert_eq!(r, &mock_source::record(opts, r["id"].as_u64().unwrap()));
    }
}

fn all_ids(records: u64) -> BTreeSet<u64> {
    (1..=records).collect()
}

/// The job succeeded and its result counts `records`; returns the job document.
async fn succeeded(stack: &Stack, id: &str, records: u64) -> Value {
    let job = stack.finished(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["records"], records, "{job}");
    assert!(job["result"]["download_url"].is_string(), "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_ranges_in_every_pagination_style() {
    let mock = MockSource::start(quick(2500)).await.unwrap();
    let url = mock.base_url();
    let styles = ["offset", "page", "cursor"];
    let toml: String = styles
        .iter()
        .map(|s| source(&format!("ids_{s}"), &url, &format!("pagination = \"{s}\"")))
        .collect();
    let stack = Stack::start(Roles::ALL, &toml).await;
    for style in styles {
        let name = format!("ids_{style}");
        let id = submit(&stack, json!({"source": name})).await;
        let job = succeeded(&stack, &id, 2500).await;
        // 2500 ids in ranges of 350: 8 partitions, each of 9 pages of 40 (the last 7 or less).
        assert_eq!(job["progress"]["total"], 8, "{style}");
        assert_eq!(job["result"]["partitions"], 8);
        assert_exactly(
            &ingested(&stack, &name, &id),
            mock.options(),
            &all_ids(2500),
        );
        let manifest: Value = serde_json::from_slice(&stack.download(&id).await).unwrap();
        assert_eq!(manifest["records"], 2500);
        assert_eq!(manifest["partitions"].as_array().unwrap().len(), 8);
        let summed: u64 = manifest["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["records"].as_u64().unwrap())
            .sum();
        assert_eq!(summed, 2500);
    }
    // Bounds given in the request: ids 1000..=1999 only.
    let id = submit(
        &stack,
        json!({"source": "ids_cursor", "from_id": 1000, "to_id": 1999}),
    )
    .await;
    succeeded(&stack, &id, 1000).await;
    let expected = (1000..=1999).collect();
    assert_exactly(
        &ingested(&stack, "ids_cursor", &id),
        mock.options(),
        &expected,
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_in_every_pagination_style() {
    let opts = quick(2500);
    let mock = MockSource::start(opts.clone()).await.unwrap();
    let url = mock.base_url();
    let styles = ["offset", "page", "cursor"];
    let toml: String = styles
        .iter()
        .map(|s| {
            let extra = format!("pagination = \"{s}\"\npartition = \"time\"\nwindow_secs = 600");
            source(&format!("times_{s}"), &url, &extra)
        })
        .collect();
    let stack = Stack::start(Roles::ALL, &toml).await;
    let since = mock_source::base_time() + TimeDelta::seconds(100);
    let before = mock_source::base_time() + TimeDelta::seconds(2000);
    let expected: BTreeSet<u64> = (1..=2500)
        .filter(|&id| {
            let t = mock_source::updated_at(2500, id);
            since <= t && t < before
        })
        .collect();
    assert_eq!(expected.len(), 1900);
    for style in styles {
        let name = format!("times_{style}");
        let request = json!({
            "source": name, "modified_since": rfc3339(since), "modified_before": rfc3339(before),
        });
        let id = submit(&stack, request).await;
        let job = succeeded(&stack, &id, 1900).await;
        // 1900 s in windows of 600 s.
        assert_eq!(job["progress"]["total"], 4, "{style}");
        assert_exactly(&ingested(&stack, &name, &id), mock.options(), &expected);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_are_retried_without_loss() {
    let opts = MockSourceOptions {
        error_rate: 0.25,
        seed: 7,
        ..quick(2000)
    };
    let mock = MockSource::start(opts).await.unwrap();
    let toml = source("flaky", &mock.base_url(), "max_attempts = 20");
    let stack = Stack::start(Roles::ALL, &toml).await;
    let id = submit(&stack, json!({"source": "flaky", "to_id": 2000})).await;
    let job = succeeded(&stack, &id, 2000).await;
    assert_exactly(
        &ingested(&stack, "flaky", &id),
        mock.options(),
        &all_ids(2000),
    );
    let stats = mock.stats();
    assert!(stats.errors > 0, "{stats:?}");
    // Every failed request was made again.
    assert!(
        job["result"]["requests"].as_u64().unwrap() > stats.ok - 1,
        "{job}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let mock = MockSource::start(quick(30)).await.unwrap();
    // The first request for records answers 429 with `Retry-After: 1`.
    let front = Front::start(mock.base_url(), 0, 1).await;
    let stack = Stack::start(Roles::ALL, &source("throttled", &front.url, "")).await;
    let id = submit(&stack, json!({"source": "throttled", "to_id": 30})).await;
    succeeded(&stack, &id, 30).await;
    assert_exactly(
        &ingested(&stack, "throttled", &id),
        mock.options(),
        &all_ids(30),
    );
    let first_page = front.arrivals("from_id=1&to_id=30&offset=0&");
    assert_eq!(
        first_page.len(),
        2,
        "the throttled page is asked again once"
    );
    let waited = first_page[1] - first_page[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_jobs_or_messages() {
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    let opts = MockSourceOptions {
        auth_token: Some(token.clone()),
        ..quick(1000)
    };
    let mock = MockSource::start(opts).await.unwrap();
    let secret_file = std::env::temp_dir().join(format!("offload-it-{}", uuid::Uuid::new_v4()));
    std::fs::write(&secret_file, format!("{token}\n")).unwrap();
    let extra = format!(
        "auth_scheme = \"Bearer\"\nauth_secret = \"file:{}\"",
        secret_file.display()
    );
    // No worker yet: the items wait in the queue, where they can be read.
    let parts = Roles {
        worker: false,
        ..Roles::ALL
    };
    let stack = Stack::start(parts, &source("private", &mock.base_url(), &extra)).await;
    let id = submit(&stack, json!({"source": "private"})).await;
    let running = stack
        .wait_for(&id, |j| j["progress"]["total"].as_u64() == Some(3))
        .await;
    assert_eq!(running["status"], "running");
    // A running job has nothing to retry.
    let (status, body) = stack
        .post(&format!("/v1/jobs/{id}/retry-failed"), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");

    let rows: Vec<(Vec<u8>, Option<Value>)> =
        sqlx::query_as("SELECT body, properties FROM offload.queue_messages")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    assert!(rows.len() >= 3);
    for (body, properties) in &rows {
        let text = format!("{} {properties:?}", String::from_utf8_lossy(body));
        assert!(
            !text.contains(&token),
            "a message carries the credential: {text}"
        );
    }

    let worker = stack.start_worker();
    let job = succeeded(&stack, &id, 1000).await;
    assert_exactly(
        &ingested(&stack, "private", &id),
        mock.options(),
        &all_ids(1000),
    );
    let stored: Vec<(Value, Option<Value>)> =
        sqlx::query_as("SELECT params, result FROM offload.jobs")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    let items: Vec<(Value, Option<Value>, Option<String>)> =
        sqlx::query_as("SELECT payload, output, last_error FROM offload.work_items")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    let everything = format!(
        "{job} {stored:?} {items:?} {}",
        String::from_utf8_lossy(&stack.download(&id).await)
    );
    assert!(!everything.contains(&token), "{everything}");
    assert_eq!(
        mock.stats().rejected,
        0,
        "every request carried the credential"
    );
    worker.cancel();
    std::fs::remove_file(&secret_file).unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_partitions_are_retried_on_request() {
    let mock = MockSource::start(quick(1000)).await.unwrap();
    // The partition of ids 351..=700 answers 503 until told otherwise.
    let front = Front::start(mock.base_url(), 351, 0).await;
    let toml = format!(
        "{}[queue]\nmax_delivery_count = 2\n[worker]\nretry_base_ms = 20\n",
        source("fragile", &front.url, "max_attempts = 1")
    );
    let stack = Stack::start(Roles::ALL, &toml).await;
    let id = submit(&stack, json!({"source": "fragile", "to_id": 1000})).await;
    let failed = stack.finished(&id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["progress"]["failed"], 1, "{failed}");
    assert_eq!(failed["progress"]["done"], 2, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("503"),
        "{failed}"
    );

    front.stop_failing();
    let (status, retried) = stack
        .post(&format!("/v1/jobs/{id}/retry-failed"), &json!({}))
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["status"], "running", "{retried}");
    assert_eq!(retried["progress"]["failed"], 0, "{retried}");
    assert!(retried.get("error").is_none(), "{retried}");
    let job = succeeded(&stack, &id, 1000).await;
    assert_eq!(job["progress"]["done"], 3, "{job}");
    assert_exactly(
        &ingested(&stack, "fragile", &id),
        mock.options(),
        &all_ids(1000),
    );

    // Nothing left to retry.
    let (status, body) = stack
        .post(&format!("/v1/jobs/{id}/retry-failed"), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "nothing_to_retry", "{body}");
    let unknown = uuid::Uuid::now_v7();
    let (status, _) = stack
        .post(&format!("/v1/jobs/{unknown}/retry-failed"), &json!({}))
        .await;
    assert_eq!(status, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_settles_near_the_source_limit() {
    let opts = MockSourceOptions {
        records: 40_000,
        latency: Duration::from_millis(20),
        concurrency_limit: Some(4),
        ..Default::default()
    };
    let mock = MockSource::start(opts).await.unwrap();
    let extra = "page_size = 100\npartition_size = 1000\nmax_concurrency = 16\nmax_attempts = 20";
    let toml = format!(
        "{}[worker]\nconcurrency = 12\n[database]\nmax_connections = 20\n",
        source("limited", &mock.base_url(), extra)
    );
    let stack = Stack::start(Roles::ALL, &toml).await;
    let id = submit(&stack, json!({"source": "limited"})).await;
    succeeded(&stack, &id, 40_000).await;
    let records = ingested(&stack, "limited", &id);
    let unique: BTreeSet<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!((records.len(), unique), (40_000, all_ids(40_000)));

    let stats = mock.stats();
    let (permits, in_use, state) = jobs_ingest::governor::snapshot(&stack.db.pool, "limited")
        .await
        .unwrap()
        .unwrap();
    eprintln!("{stats:?}; permits {permits}, in use {in_use}, {state:?}");
    assert!(
        (3..=5).contains(&permits),
        "settled at {permits}: {state:?}, {stats:?}"
    );
    assert_eq!(in_use, 0, "every permit was given back");
    // 400 pages; trouble is rare, not sustained.
    assert!(stats.throttled * 10 < stats.ok, "{stats:?}");
    stack.stop().await;
}

/// The planner's request for the source's maximum id waits for a permit of the source's
/// limit like any page request: while the only permit is held elsewhere the source sees
/// nothing; once it is given back the job plans and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_id_is_asked_under_a_permit() {
    let opts = quick(300);
    let mock = MockSource::start(opts).await.unwrap();
    let stack = Stack::start(Roles::ALL, &source("gated", &mock.base_url(), "")).await;
    let governor = jobs_ingest::governor::Governor::new(stack.db.pool.clone());
    let gate = governor
        .gate("gated", 64, Duration::from_secs(60))
        .await
        .unwrap();
    // A fresh source has one permit: held here.
    let held = gate.try_acquire().await.unwrap().expect("the only permit");
    let id = submit(&stack, json!({"source": "gated"})).await;
    stack.wait_for(&id, |j| j["status"] == "planning").await;
    // Planning has started; for a while it must not reach the source.
    let window = tokio::time::timeout(Duration::from_millis(500), async {
        while mock.stats().requests == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(window.is_err(), "the source was asked without a permit");
    gate.release(held).await.unwrap();
    succeeded(&stack, &id, 300).await;
    stack.stop().await;
}
