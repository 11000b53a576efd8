//! The mock source over real loopback HTTP: every pagination style walks a filtered range
//! and gets exactly the generator's records; errors, auth, throttling and stats behave as
//! documented. Panicking on failure is the point here.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use mock_source::{MockSource, MockSourceOptions, Stats, base_time, record, updated_at};
use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// Small and instant: walking every page takes milliseconds.
fn quick() -> MockSourceOptions {
    MockSourceOptions {
        records: 1_000,
        page_size_max: 50,
        payload_bytes: 16,
        latency: Duration::ZERO,
        ..Default::default()
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    base_time() + TimeDelta::seconds(seconds)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Ids 101..=850 updated in [base + 200 s, base + 700 s), as query parameters.
fn filter() -> Vec<(&'static str, String)> {
    vec![
        ("from_id", "101".to_owned()),
        ("to_id", "850".to_owned()),
        ("modified_since", rfc3339(at(200))),
        ("modified_before", rfc3339(at(700))),
    ]
}

/// What `filter()` must select, straight from the generator.
fn expected(opts: &MockSourceOptions) -> Vec<Value> {
    let expected: Vec<Value> = (101..=850)
        .filter(|&id| (at(200)..at(700)).contains(&updated_at(opts.records, id)))
        .map(|id| record(opts, id))
        .collect();
    // The filter must really cut across the id range for the walks to mean anything.
    assert!(
        expected.len() > 200 && expected.len() < 600,
        "{}",
        expected.len()
    );
    expected
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn get(client: &Client, url: &str, query: &[(&str, String)]) -> Answer {
    let response = client.get(url).query(query).send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn with(
    mut query: Vec<(&'static str, String)>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    query.extend(
        more.iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    query
}

fn records(body: &Value) -> Vec<Value> {
    body["records"].as_array().unwrap().clone()
}

/// Pages never exceed this many; guards the walks against looping forever.
const MAX_PAGES: usize = 1_000;

#[tokio::test]
async fn offset_paging_walks_the_filtered_range_exactly_once() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    let expected = expected(source.options());

    let mut seen = Vec::new();
    for _ in 0..MAX_PAGES {
        let offset = seen.len().to_string();
        let page = get(
            &client,
            &url,
            &with(filter(), &[("offset", &offset), ("limit", "7")]),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.body["total"], expected.len());
        let records = records(&page.body);
        if records.is_empty() {
            break;
        }
        assert!(records.len() <= 7);
        seen.extend(records);
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn page_number_paging_walks_the_filtered_range_exactly_once() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    let expected = expected(source.options());

    let first = get(
        &client,
        &url,
        &with(filter(), &[("page", "1"), ("per_page", "9")]),
    )
    .await;
    let total_pages = first.body["total_pages"].as_u64().unwrap();
    assert_eq!(total_pages, expected.len().div_ceil(9) as u64);
    let mut seen = Vec::new();
    for page in 1..=total_pages {
        let query = with(filter(), &[("page", &page.to_string()), ("per_page", "9")]);
        let answer = get(&client, &url, &query).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["page"], page);
        assert_eq!(answer.body["total_pages"], total_pages);
        seen.extend(records(&answer.body));
    }
    assert_eq!(seen, expected);

    let past_the_end = with(
        filter(),
        &[("page", &(total_pages + 1).to_string()), ("per_page", "9")],
    );
    assert!(records(&get(&client, &url, &past_the_end).await.body).is_empty());
}

#[tokio::test]
async fn cursor_paging_walks_the_filtered_range_exactly_once() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    let expected = expected(source.options());

    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..MAX_PAGES {
        let page = get(
            &client,
            &url,
            &with(filter(), &[("cursor", &cursor), ("limit", "11")]),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            page.body.as_object().unwrap().len(),
            2,
            "only records and next_cursor"
        );
        seen.extend(records(&page.body));
        match &page.body["next_cursor"] {
            Value::String(next) => {
                assert!(page.headers.contains_key(LINK));
                cursor = next.clone();
            }
            Value::Null => {
                assert!(!page.headers.contains_key(LINK), "no Link on the last page");
                break;
            }
            other => panic!("next_cursor {other}"),
        }
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn link_headers_walk_the_filtered_range_exactly_once() {
    let source = MockSource::start(quick()).await.unwrap();
    let client = Client::new();
    let expected = expected(source.options());

    // Start with no pagination parameter at all, then follow `Link: <...>; rel="next"`.
    let mut next = Some(format!("{}/records", source.base_url()));
    let mut query = filter();
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages < MAX_PAGES);
        let page = get(&client, &url, &query).await;
        assert_eq!(page.status, StatusCode::OK, "{url}");
        seen.extend(records(&page.body));
        query.clear(); // the link carries the filters
        next = page.headers.get(LINK).map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            let target = link.trim_start_matches('<').split('>').next().unwrap();
            assert!(target.starts_with(&source.base_url()), "absolute: {target}");
            target.to_owned()
        });
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len().div_ceil(50), "pages of page_size_max");
}

#[tokio::test]
async fn a_style_less_request_is_the_first_page_of_every_style() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    let expected = expected(source.options());

    let page = get(&client, &url, &with(filter(), &[("limit", "1000")])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        records(&page.body),
        expected[..50],
        "limit capped at page_size_max"
    );
    assert_eq!(page.body["total"], expected.len());
    assert_eq!(page.body["page"], 1);
    assert_eq!(page.body["total_pages"], expected.len().div_ceil(50));
    assert!(page.body["next_cursor"].is_string());
}

#[tokio::test]
async fn time_window_is_half_open_on_updated_at() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();

    // 37 is coprime with 1,000: each second of the window holds exactly one record.
    let query = [
        ("modified_since", rfc3339(at(100))),
        ("modified_before", rfc3339(at(160))),
        ("limit", "100".to_owned()),
        ("offset", "0".to_owned()),
    ];
    let page = get(&client, &url, &query).await;
    assert_eq!(page.body["total"], 60);
    let records = records(&page.body);
    assert_eq!(records.len(), 50);
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "sorted by id");
    for record in &records {
        let time: DateTime<Utc> = record["updated_at"].as_str().unwrap().parse().unwrap();
        assert!((at(100)..at(160)).contains(&time), "{record}");
    }

    // Record 1 was updated at base + 37 s: `since` is inclusive, `before` exclusive.
    let exactly = |name: &'static str| [(name, rfc3339(at(37))), ("to_id", "1".to_owned())];
    let since = get(&client, &url, &exactly("modified_since")).await;
    assert_eq!(since.body["total"], 1);
    let before = get(&client, &url, &exactly("modified_before")).await;
    assert_eq!(before.body["total"], 0);
}

#[tokio::test]
async fn max_id_is_the_dataset_size() {
    let source = MockSource::start(MockSourceOptions {
        records: 12_345,
        ..quick()
    })
    .await
    .unwrap();
    let answer = get(
        &Client::new(),
        &format!("{}/records/max-id", source.base_url()),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, serde_json::json!({ "max_id": 12_345 }));
}

/// Asks for `query`, expects `400`, returns the `error` object.
async fn bad(client: &Client, url: &str, query: &[(&'static str, &str)]) -> Value {
    let answer = get(client, url, &with(Vec::new(), query)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query:?}");
    answer.body["error"].clone()
}

#[tokio::test]
async fn bad_requests_answer_400_naming_the_parameter() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    let mixed = bad(&client, &url, &[("offset", "0"), ("cursor", "abc")]).await;
    assert_eq!(mixed["field"], "offset,cursor");
    let message = mixed["message"].as_str().unwrap();
    assert!(
        message.contains("`offset`") && message.contains("`cursor`"),
        "{message}"
    );
    assert_eq!(
        bad(&client, &url, &[("page", "2"), ("limit", "10")]).await["field"],
        "limit,page"
    );
    assert_eq!(
        bad(&client, &url, &[("cursor", "garbage")]).await["field"],
        "cursor"
    );
    assert_eq!(
        bad(&client, &url, &[("modified_since", "2026-13-01")]).await["field"],
        "modified_since"
    );
    assert_eq!(
        bad(&client, &url, &[("from_id", "ten")]).await["field"],
        "from_id"
    );
    assert_eq!(
        bad(&client, &url, &[("limit", "0")]).await["code"],
        "invalid_parameter"
    );
    assert_eq!(source.stats().rejected, 6);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let source = MockSource::start(MockSourceOptions {
        auth_token: Some("s3cret".to_owned()),
        ..quick()
    })
    .await
    .unwrap();
    let url = format!("{}/records/max-id", source.base_url());
    let client = Client::new();

    let status =
        |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status() };
    assert_eq!(status(client.get(&url)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(client.get(&url).bearer_auth("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(client.get(&url).bearer_auth("s3cret")).await,
        StatusCode::OK
    );
    // Stats are exempt.
    assert_eq!(
        status(client.get(format!("{}/stats", source.base_url()))).await,
        StatusCode::OK
    );
    assert_eq!(source.stats().rejected, 2);
}

#[tokio::test]
async fn over_the_concurrency_limit_it_throttles_with_retry_after() {
    let source = MockSource::start(MockSourceOptions {
        concurrency_limit: Some(4),
        latency: Duration::from_millis(100),
        ..quick()
    })
    .await
    .unwrap();
    let url = format!("{}/records?limit=1", source.base_url());
    let client = Client::new();

    let answers = futures::future::join_all((0..12).map(|_| client.get(&url).send())).await;
    let mut ok = 0;
    let mut throttled = 0;
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                assert_eq!(answer.headers()[RETRY_AFTER], "1");
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The first four arrivals always fit under the limit.
    assert!(ok >= 4, "ok {ok}");
    assert!(throttled >= 1, "throttled {throttled}");

    let stats: Stats = client
        .get(format!("{}/stats", source.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, source.stats());
    assert_eq!(
        (stats.requests, stats.ok, stats.throttled),
        (12, ok, throttled)
    );
    assert!(
        stats.max_in_flight > 4,
        "max_in_flight {}",
        stats.max_in_flight
    );
}

#[tokio::test]
async fn error_rate_one_fails_every_request() {
    let source = MockSource::start(MockSourceOptions {
        error_rate: 1.0,
        ..quick()
    })
    .await
    .unwrap();
    let url = format!("{}/records", source.base_url());
    let client = Client::new();
    for _ in 0..3 {
        let answer = get(&client, &url, &[]).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.body["error"]["code"], "internal");
    }
    let stats = source.stats();
    assert_eq!((stats.requests, stats.errors, stats.ok), (3, 3, 0));
}

#[tokio::test]
async fn a_seed_reproduces_the_same_failures() {
    let statuses = |seed| async move {
        let source = MockSource::start(MockSourceOptions {
            error_rate: 0.5,
            seed,
            ..quick()
        })
        .await
        .unwrap();
        let url = format!("{}/records/max-id", source.base_url());
        let client = Client::new();
        let mut statuses = Vec::new();
        for _ in 0..32 {
            statuses.push(client.get(&url).send().await.unwrap().status().as_u16());
        }
        statuses
    };
    let first = statuses(7).await;
    assert_eq!(first, statuses(7).await);
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
}

#[tokio::test]
async fn stats_count_and_reset() {
    let source = MockSource::start(quick()).await.unwrap();
    let client = Client::new();
    let page = get(
        &client,
        &format!("{}/records", source.base_url()),
        &[("limit", "30".to_owned())],
    )
    .await;
    assert_eq!(records(&page.body).len(), 30);
    let stats = source.stats();
    assert_eq!((stats.requests, stats.ok, stats.records_served), (1, 1, 30));
    assert_eq!(stats.max_in_flight, 1);

    let reset = client
        .post(format!("{}/stats/reset", source.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(source.stats(), Stats::default());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let source = MockSource::start(quick()).await.unwrap();
    let url = format!("{}/records/max-id", source.base_url());
    assert!(reqwest::get(&url).await.is_ok());
    source.shutdown().await.unwrap();
    assert!(reqwest::get(&url).await.is_err());
}

#[tokio::test]
async fn refuses_invalid_options_and_public_addresses() {
    let invalid = MockSourceOptions {
        error_rate: 2.0,
        ..quick()
    };
    assert!(MockSource::start(invalid).await.is_err());
    let public = "0.0.0.0:0".parse().unwrap();
    assert!(MockSource::start_on(public, quick()).await.is_err());
}
