//! A front for a mock source that misbehaves on command, for what the mock cannot do by
//! itself: fail one partition until told to stop, throttle the first requests with a
//! `Retry-After`, and remember when each request arrived.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    /// While set, record requests whose query has `from_id={fail_from_id}` answer 503.
    failing: AtomicBool,
    fail_from_id: u64,
    /// This many record requests still answer 429 with `Retry-After: 1`.
    throttle_left: AtomicU32,
    /// (arrival, path and query) of every request.
    seen: Mutex<Vec<(Instant, String)>>,
}

/// A running front; stops with the test's runtime.
pub struct Front {
    pub url: String,
    shared: Arc<Shared>,
}

impl Front {
    pub async fn start(upstream: String, fail_from_id: u64, throttle_first: u32) -> Self {
        let shared = Arc::new(Shared {
            upstream,
            http: reqwest::Client::new(),
            failing: AtomicBool::new(fail_from_id > 0),
            fail_from_id,
            throttle_left: AtomicU32::new(throttle_first),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    /// The failing partition recovers.
    pub fn stop_failing(&self) {
        self.shared.failing.store(false, Ordering::SeqCst);
    }

    /// Arrival times of the requests whose path and query contain `needle`.
    pub fn arrivals(&self, needle: &str) -> Vec<Instant> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, what)| what.contains(needle))
            .map(|(at, _)| *at)
            .collect()
    }
}

async fn forward(State(s): State<Arc<Shared>>, request: Request) -> Response {
    let what = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    s.seen.lock().unwrap().push((Instant::now(), what.clone()));
    let is_records = request.uri().path() == "/records";
    if is_records
        && s.failing.load(Ordering::SeqCst)
        && what.contains(&format!("from_id={}&", s.fail_from_id))
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "partition down").into_response();
    }
    if is_records
        && s.throttle_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let mut upstream = s.http.get(format!("{}{what}", s.upstream));
    if let Some(auth) = request.headers().get(header::AUTHORIZATION) {
        upstream = upstream.header(header::AUTHORIZATION, auth.clone());
    }
    match upstream.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            let body = r.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
