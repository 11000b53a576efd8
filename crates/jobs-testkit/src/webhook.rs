//! A webhook receiver on loopback, and Standard Webhooks verification written from the
//! specification (not the notifier's code), so a test checks the notifier against the
//! standard rather than against itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::eventually;

/// One call the receiver got.
#[derive(Debug, Clone)]
pub struct Call {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// How the receiver answers one call: a status and, optionally, `Retry-After`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<&'static str>,
}

impl Answer {
    pub const OK: Self = Self {
        status: StatusCode::NO_CONTENT,
        retry_after: None,
    };

    pub const fn unavailable(retry_after: &'static str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(retry_after),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    calls: Vec<Call>,
}

/// What the endpoint sees: the calls so far, and the script.
type HookState = (Arc<Mutex<Shared>>, Arc<Vec<Answer>>);

/// `POST {url}` records every call and answers the n-th with the n-th scripted answer, then
/// with the last one for ever (`204` when none was scripted).
#[derive(Debug)]
pub struct Receiver {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    pub async fn start(script: Vec<Answer>) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let script = Arc::new(script);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((shared, script)): State<HookState>,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let n = {
                            let mut s = shared.lock().unwrap();
                            s.calls.push(Call {
                                headers,
                                body: body.to_vec(),
                            });
                            s.calls.len()
                        };
                        let answer = script
                            .get(n - 1)
                            .or(script.last())
                            .cloned()
                            .unwrap_or(Answer::OK);
                        match answer.retry_after {
                            Some(after) => {
                                (answer.status, [("retry-after", after)]).into_response()
                            }
                            None => answer.status.into_response(),
                        }
                    },
                ),
            )
            .with_state((shared.clone(), script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }

    /// The calls, once there are at least `n` (failing the test after `deadline`).
    pub async fn wait_for_calls(&self, n: usize, deadline: Duration) -> Vec<Call> {
        eventually(&format!("{n} webhook calls"), deadline, || async {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }
}

/// Whether `headers` carry a valid Standard Webhooks signature of `body` under `secret`
/// (`whsec_…`): `v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`,
/// among the space-separated signatures.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(id), Some(ts), Some(sigs)) = (
        headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        headers
            .get("webhook-timestamp")
            .and_then(|v| v.to_str().ok()),
        headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    sigs.split(' ').any(|s| s == expected)
}
