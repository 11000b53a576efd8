//! A webhook receiver on loopback that records every delivery: its `webhook-id` and the
//! job it is about. "One logical webhook per job" means one `webhook-id` per job; a
//! delivery repeated with the same id (at-least-once) is counted as a duplicate, not a
//! second webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Deliveries {
    /// Job id → the `webhook-id`s seen for it, and how many deliveries in all.
    by_job: BTreeMap<String, (BTreeSet<String>, u32)>,
}

impl Deliveries {
    /// Jobs with exactly one logical webhook, jobs with more than one, and deliveries
    /// repeated with an id already seen.
    pub fn tally(&self, jobs: &[String]) -> (usize, Vec<String>, u32) {
        let mut one = 0;
        let mut wrong = Vec::new();
        let mut repeats = 0;
        for job in jobs {
            match self.by_job.get(job) {
                Some((ids, n)) if ids.len() == 1 => {
                    one += 1;
                    repeats += n - 1;
                }
                Some((ids, _)) => wrong.push(format!("{job}: {} webhook ids", ids.len())),
                None => wrong.push(format!("{job}: no webhook")),
            }
        }
        (one, wrong, repeats)
    }
}

/// Starts the receiver; its URL and what it records.
pub async fn start() -> anyhow::Result<(String, Arc<Mutex<Deliveries>>)> {
    let got = Arc::new(Mutex::new(Deliveries::default()));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(got): axum::extract::State<Arc<Mutex<Deliveries>>>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let job = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["data"]["id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let mut got = got.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = got.by_job.entry(job).or_default();
                    entry.0.insert(id);
                    entry.1 += 1;
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("webhook receiver stopped: {e}");
        }
    });
    Ok((url, got))
}
