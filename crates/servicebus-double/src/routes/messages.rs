//! The data-plane routes: send, receive (peek-lock and receive-and-delete, with long
//! polling) and settle (complete, unlock, renew), on a queue or its `$DeadLetterQueue`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::{AppState, DEAD_LETTER_SEGMENT, EntityPath, Failure, body_bytes};
use crate::state::{EntityKind, Queue, QueueName, ReceiveMode, StateError, StoredMessage};
use crate::wire;

/// The longest long poll a receive may ask for.
const MAX_RECEIVE_TIMEOUT_SECS: u64 = 3_600;

/// `POST /{queue}/messages`: one message, or a JSON batch, stored atomically.
pub(super) async fn send(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Failure> {
    let (name, kind) = path.resolve()?;
    if kind == EntityKind::DeadLetter {
        return Err(Failure::bad_request("cannot send to a dead-letter queue"));
    }
    let body = body_bytes(body)?;
    let batch = if wire::is_batch(&headers) {
        wire::parse_batch(&body)
    } else {
        wire::parse_single(&headers, body).map(|message| vec![message])
    }
    .map_err(Failure::bad_request)?;
    app.with_namespace(|ns| ns.queue(&name).map(|q| q.send(batch, Utc::now())))?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, Deserialize)]
pub(super) struct ReceiveParams {
    timeout: Option<String>,
}

impl ReceiveParams {
    /// `?timeout=N` whole seconds; 60 when absent, as in the real service.
    fn timeout(&self) -> Result<Duration, Failure> {
        let Some(text) = &self.timeout else {
            return Ok(Duration::from_secs(60));
        };
        text.parse()
            .ok()
            .filter(|&secs| secs <= MAX_RECEIVE_TIMEOUT_SECS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                Failure::bad_request(format!(
                    "timeout must be whole seconds from 0 to {MAX_RECEIVE_TIMEOUT_SECS}"
                ))
            })
    }
}

/// `POST .../messages/head`: peek-lock, `201 Created`.
pub(super) async fn peek_lock(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
    Query(params): Query<ReceiveParams>,
) -> Result<Response, Failure> {
    receive(&app, &path, &params, ReceiveMode::PeekLock).await
}

/// `DELETE .../messages/head`: receive-and-delete, `200 OK`.
pub(super) async fn receive_and_delete(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
    Query(params): Query<ReceiveParams>,
) -> Result<Response, Failure> {
    receive(&app, &path, &params, ReceiveMode::ReceiveAndDelete).await
}

/// What one look at the queue found.
enum Polled {
    Message(StoredMessage),
    /// Nothing receivable; something may become so at this instant without a request.
    Empty(Option<DateTime<Utc>>),
    /// The queue was deleted and recreated since we subscribed to its notifications.
    Resubscribe,
}

/// Long-polls for a message: looks, then sleeps until notified, until the next lock expiry or
/// scheduled time, or until the deadline, whichever comes first; `204` at the deadline.
async fn receive(
    app: &AppState,
    path: &EntityPath,
    params: &ReceiveParams,
    mode: ReceiveMode,
) -> Result<Response, Failure> {
    let (name, kind) = path.resolve()?;
    let deadline = Instant::now() + params.timeout()?;
    loop {
        let notify = app.with_namespace(|ns| ns.queue(&name).map(|q| Arc::clone(q.notifier())))?;
        // Subscribe before looking, so a send between the look and the sleep still wakes us.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let polled = app.with_namespace(|ns| {
            let queue = ns.queue(&name)?;
            if !Arc::ptr_eq(queue.notifier(), &notify) {
                return Ok::<_, StateError>(Polled::Resubscribe);
            }
            Ok(match queue.receive(kind, mode, Utc::now()) {
                Some(message) => Polled::Message(message),
                None => Polled::Empty(queue.next_change()),
            })
        })?;
        let next_change = match polled {
            Polled::Message(message) => {
                return Ok(message_response(app, &name, kind, mode, &message));
            }
            Polled::Resubscribe => continue,
            Polled::Empty(next_change) => next_change,
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let wake_at = next_change.map_or(deadline, |at| {
            let until = (at - Utc::now()).to_std().unwrap_or_default();
            deadline.min(now + until)
        });
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

fn message_response(
    app: &AppState,
    name: &QueueName,
    kind: EntityKind,
    mode: ReceiveMode,
    message: &StoredMessage,
) -> Response {
    let status = match mode {
        ReceiveMode::PeekLock => StatusCode::CREATED,
        ReceiveMode::ReceiveAndDelete => StatusCode::OK,
    };
    let mut response = (status, message.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.extend(wire::property_headers(message));
    let content_type = message
        .content_type
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(wire::BROKER_PROPERTIES, wire::broker_properties(message));
    if let Some(lock) = message.lock {
        let entity = match kind {
            EntityKind::Main => name.as_str().to_owned(),
            EntityKind::DeadLetter => format!("{}/{DEAD_LETTER_SEGMENT}", name.as_str()),
        };
        let location = format!(
            "{}/{entity}/messages/{}/{}",
            app.endpoint,
            message.sequence_number,
            lock.token.hyphenated()
        );
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, location);
        }
    }
    response
}

/// `.../messages/{message}/{token}` path parameters.
#[derive(Debug, Deserialize)]
pub(super) struct SettlePath {
    queue: String,
    #[serde(default)]
    sub: Option<String>,
    message: String,
    token: String,
}

/// Runs a settle operation; an unknown queue is `410 Gone` here, a lost lock `404`.
fn settle<R>(
    app: &AppState,
    path: &SettlePath,
    op: impl FnOnce(&mut Queue, EntityKind, &str, Uuid) -> Result<R, StateError>,
) -> Result<R, Failure> {
    let entity = EntityPath {
        queue: path.queue.clone(),
        sub: path.sub.clone(),
    };
    let (name, kind) = entity.resolve()?;
    app.with_namespace(|ns| {
        let queue = ns
            .queue(&name)
            .map_err(|_| Failure::new(StatusCode::GONE, "queue not found"))?;
        let token = Uuid::parse_str(&path.token).map_err(|_| StateError::LockLost)?;
        Ok(op(queue, kind, &path.message, token)?)
    })
}

/// `DELETE .../messages/{message}/{token}`: complete.
pub(super) async fn complete(
    State(app): State<Arc<AppState>>,
    Path(path): Path<SettlePath>,
) -> Result<StatusCode, Failure> {
    settle(&app, &path, |q, kind, message, token| {
        q.complete(kind, message, token, Utc::now())
    })?;
    Ok(StatusCode::OK)
}

/// `PUT .../messages/{message}/{token}`: unlock (abandon).
pub(super) async fn unlock(
    State(app): State<Arc<AppState>>,
    Path(path): Path<SettlePath>,
) -> Result<StatusCode, Failure> {
    settle(&app, &path, |q, kind, message, token| {
        q.unlock(kind, message, token, Utc::now())
    })?;
    Ok(StatusCode::OK)
}

/// `POST .../messages/{message}/{token}`: renew the lock.
pub(super) async fn renew_lock(
    State(app): State<Arc<AppState>>,
    Path(path): Path<SettlePath>,
) -> Result<Response, Failure> {
    let message = settle(&app, &path, |q, kind, message, token| {
        q.renew_lock(kind, message, token, Utc::now())
    })?;
    let headers = [(wire::BROKER_PROPERTIES, wire::broker_properties(&message))];
    Ok((StatusCode::OK, headers).into_response())
}
