//! Live progress: `GET /v1/jobs/{id}/events` as Server-Sent Events.
//!
//! The job store announces every status change and counter update with
//! `NOTIFY offload_job_events` (in the same transaction, so only committed changes are
//! announced). Each API process holds one `LISTEN` connection and fans the notifications
//! out to its SSE clients over a broadcast channel: a thousand watchers cost one database
//! connection, not a thousand polling queries. A client that falls behind, or a listener
//! that reconnects, gets the job's current state again rather than a gap.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use jobs_core::JobId;
use jobs_core::document::job_document;
use jobs_core::listen::Notice;
use jobs_core::sqlx::PgPool;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::{ErrorBody, JobEvent};
use crate::error::ApiError;
use crate::extract::Path;

pub const CHANNEL: &str = jobs_core::store::JOB_EVENTS_CHANNEL;

/// Starts the process's listener; it feeds `tx` until `stop`. After a gap (notifications
/// may have been missed) it sends `null`, and clients re-read the job.
pub async fn spawn_listener(
    pool: &PgPool,
    tx: broadcast::Sender<Value>,
    stop: CancellationToken,
) -> Result<(), jobs_core::sqlx::Error> {
    jobs_core::listen::spawn_listener("job events listener", pool, CHANNEL, stop, move |n| {
        let event = match n {
            Notice::Payload(p) => match serde_json::from_str::<Value>(p) {
                Ok(v) => v,
                Err(_) => return,
            },
            Notice::Gap => Value::Null,
        };
        let _ = tx.send(event);
    })
    .await
}

/// Follow a job's progress (Server-Sent Events).
///
/// A `job` event with the full document first, then a `progress` event per change, and a
/// final `job` event when the job is finished, after which the stream ends. A comment is
/// sent every 15 s to keep the connection open.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "followJob",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 200, description = "`event: job` (the job document) and `event: progress` (id, status, progress)", content_type = "text/event-stream", body = JobEvent),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(job_id): Path<JobId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the state, so no change falls between the two.
    let rx = state.job_events.subscribe();
    let job = state
        .store
        .get(&tenant.0, job_id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    let base = state.base_url(&headers);
    let key = job_id.to_string();
    let stream = async_stream(state.clone(), tenant, job, base, key, rx);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn job_event(doc: &Value) -> Event {
    Event::default()
        .event("job")
        .json_data(doc)
        .unwrap_or_else(|_| Event::default().event("job"))
}

fn async_stream(
    state: AppState,
    tenant: Tenant,
    first: jobs_core::store::Job,
    base: String,
    key: String,
    rx: broadcast::Receiver<Value>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let done = first.status.is_terminal();
    let initial = job_event(&job_document(&first, &base));
    futures::stream::unfold(
        (Some(initial), done, rx, state, tenant, base, key),
        |(pending, done, mut rx, state, tenant, base, key)| async move {
            if let Some(ev) = pending {
                return Some((Ok(ev), (None, done, rx, state, tenant, base, key)));
            }
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(v) if v.get("id").and_then(Value::as_str) == Some(key.as_str()) => {
                        let terminal = v
                            .get("status")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<jobs_core::JobStatus>().ok())
                            .is_some_and(|s| s.is_terminal());
                        if terminal {
                            // The final state, in full (with its result link).
                            let id = key.parse().ok()?;
                            let job = state.store.get(&tenant.0, id).await.ok()??;
                            let ev = job_event(&job_document(&job, &base));
                            return Some((Ok(ev), (None, true, rx, state, tenant, base, key)));
                        }
                        let ev = Event::default().event("progress").json_data(&v).ok()?;
                        return Some((Ok(ev), (None, false, rx, state, tenant, base, key)));
                    }
                    Ok(Value::Null) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed notifications: send the current state instead.
                        let id = key.parse().ok()?;
                        let job = state.store.get(&tenant.0, id).await.ok()??;
                        let terminal = job.status.is_terminal();
                        let ev = job_event(&job_document(&job, &base));
                        return Some((Ok(ev), (None, terminal, rx, state, tenant, base, key)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}
