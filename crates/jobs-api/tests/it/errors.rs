//! Every error the API answers is in the JSON error format, the ones axum makes by itself
//! included (a body over the limit, a method a route does not take, a query it cannot
//! parse, an unknown route), and a database with no connection to spare is `503` with
//! `Retry-After`, not `500`.

use jobs_testkit::Roles;
use serde_json::Value;

use jobs_testkit::{KEY, Stack};

/// The answer's status, headers and body, which must be the JSON error format.
async fn json_error(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{status}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:?}"));
    assert!(body["error"]["code"].is_string(), "{status}: {body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{status}: {body}"
    );
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_axum_makes_itself_are_in_the_json_error_format() {
    let stack = Stack::start(Roles::API_ONLY, "[api]\nmax_body_bytes = 4096").await;
    let url = |p: &str| format!("{}{p}", stack.api);

    let resp = stack
        .http
        .post(url("/v1/jobs"))
        .bearer_auth(KEY)
        .body(vec![b' '; 10_000])
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_error(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("4096"),
        "the message names the limit: {body}"
    );

    let resp = stack
        .http
        .delete(url("/v1/jobs"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json_error(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let allow = headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    // A query the download route's extractor cannot parse.
    let resp = stack
        .http
        .get(url(
            "/v1/downloads/0193a5c4-7f1e-7cc2-9d4b-5b8e2f1a0000?expires=soon&signature=x",
        ))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_error(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let resp = stack
        .http
        .get(url("/v1/nothing-here"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_error(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(body["error"]["message"], "no such route");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_database_is_503_with_retry_after() {
    // The pool waits a second for a free connection before giving up.
    let stack = Stack::start(Roles::API_ONLY, "[database]\nconnect_timeout_secs = 1").await;
    let (status, _) = stack.get("/v1/jobs").await;
    assert_eq!(status, 200);

    // Hold every connection of the API's pool.
    let pool = stack.runtime().store.pool().clone();
    let max = pool.options().get_max_connections();
    let mut held = Vec::new();
    while pool.size() < max || pool.num_idle() > 0 {
        held.push(pool.acquire().await.unwrap());
    }
    assert!(!held.is_empty());

    let resp = stack
        .http
        .get(format!("{}/v1/jobs", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json_error(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );

    // Once connections are free again, the same request is served.
    drop(held);
    let (status, body) = stack.get("/v1/jobs").await;
    assert_eq!(status, 200, "{body}");
    stack.stop().await;
}
