//! The HTTP surface: the Service Bus REST routes the double serves, its two test hooks
//! (request counting, injected failures) and SAS authorization, all as one axum [`Router`].
//!
//! Handlers parse the request, lock the [`Namespace`] briefly (never across an await) to run
//! the state operation, and write the answer the real service would give.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use chrono::Utc;
use serde::Deserialize;

use crate::atom;
use crate::sas::SasKey;
use crate::state::{EntityKind, Namespace, PutOutcome, Queue, QueueName, StateError};

mod messages;

use messages::{complete, peek_lock, receive_and_delete, renew_lock, send, unlock};

/// Largest request body accepted (the Standard tier's message size limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

const ATOM_ENTRY: &str = "application/atom+xml;type=entry;charset=utf-8";
const DEAD_LETTER_SEGMENT: &str = "$DeadLetterQueue";

/// Everything the routes share. Lives in an `Arc` owned by [`crate::ServiceBusDouble`], so it
/// outlives each stop/restart of the listener.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Queues, messages, locks. Locked only for synchronous state operations.
    namespace: Mutex<Namespace>,
    /// Checks every request's SAS token.
    key: SasKey,
    /// `http://127.0.0.1:PORT`, the base of `Location` headers.
    endpoint: String,
    /// Test hook: how many of the next requests answer 503 (see `fail_next`).
    pub(crate) fail_next: AtomicUsize,
    /// Test/benchmark hook: HTTP requests seen, failed or not.
    pub(crate) requests: AtomicU64,
}

impl AppState {
    pub(crate) fn new(key: SasKey, endpoint: String) -> Self {
        Self {
            namespace: Mutex::new(Namespace::default()),
            key,
            endpoint,
            fail_next: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `f` on the namespace. A handler panic cannot leave the state half-changed in a
    /// way later requests care about more than a crash would, so poisoning is ignored.
    fn with_namespace<R>(&self, f: impl FnOnce(&mut Namespace) -> R) -> R {
        let mut namespace = self
            .namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut namespace)
    }
}

/// The double's routes. Outermost first: count the request, maybe inject a failure, check
/// the SAS token, route.
pub(crate) fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/{queue}",
            put(put_queue).get(get_queue).delete(delete_queue),
        )
        .route("/{queue}/messages", post(send))
        .route("/{queue}/{sub}/messages", post(send))
        .route(
            "/{queue}/messages/head",
            post(peek_lock).delete(receive_and_delete),
        )
        .route(
            "/{queue}/{sub}/messages/head",
            post(peek_lock).delete(receive_and_delete),
        )
        .route(
            "/{queue}/messages/{message}/{token}",
            post(renew_lock).put(unlock).delete(complete),
        )
        .route(
            "/{queue}/{sub}/messages/{message}/{token}",
            post(renew_lock).put(unlock).delete(complete),
        )
        .layer(middleware::from_fn_with_state(app.clone(), authorize))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            count_and_inject_failures,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// A failed request: a status and a short plain-text reason.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        let status = match e {
            // Messaging operations on a missing entity answer 410 Gone, as Service Bus does;
            // management reads and deletes use `not_found` below.
            StateError::QueueNotFound => StatusCode::GONE,
            StateError::LockLost => StatusCode::NOT_FOUND,
            StateError::QueueExists => StatusCode::CONFLICT,
            StateError::DuplicateDetectionImmutable => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

/// A missing entity on the management routes: 404.
fn not_found(e: StateError) -> Failure {
    match e {
        StateError::QueueNotFound => Failure::new(StatusCode::NOT_FOUND, e.to_string()),
        other => other.into(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let content_type = [(CONTENT_TYPE, "text/plain; charset=utf-8")];
        (self.status, content_type, self.message).into_response()
    }
}

async fn count_and_inject_failures(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let inject = app
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if inject {
        return Failure::new(StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response();
    }
    next.run(request).await
}

async fn authorize(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match app.key.verify(header, Utc::now().timestamp()) {
        Ok(()) => next.run(request).await,
        Err(e) => Failure::new(StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    }
}

/// `/{queue}` and `/{queue}/{sub}/...` path parameters.
#[derive(Debug, Deserialize)]
struct EntityPath {
    queue: String,
    #[serde(default)]
    sub: Option<String>,
}

impl EntityPath {
    /// The queue and which of its entities the path names; `sub` must be `$DeadLetterQueue`
    /// (axum has already percent-decoded `%24`).
    fn resolve(&self) -> Result<(QueueName, EntityKind), Failure> {
        let kind = match &self.sub {
            None => EntityKind::Main,
            Some(sub) if sub.eq_ignore_ascii_case(DEAD_LETTER_SEGMENT) => EntityKind::DeadLetter,
            Some(_) => return Err(Failure::new(StatusCode::NOT_FOUND, "no such entity")),
        };
        let name = QueueName::parse(&self.queue).ok_or_else(|| {
            Failure::bad_request("invalid queue name: use 1-100 letters, digits, '.', '-', '_'")
        })?;
        Ok((name, kind))
    }
}

/// The body, or 413 past [`MAX_BODY_BYTES`].
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Failure> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ),
        status => Failure::new(status, rejection.body_text()),
    })
}

fn atom_entry(name: &QueueName, queue: &mut Queue) -> String {
    let counts = queue.counts(Utc::now());
    atom::queue_entry(name.as_str(), queue.settings(), counts)
}

/// `PUT /{queue}`: create, or update with `If-Match: *`.
async fn put_queue(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let (name, _) = path.resolve()?;
    let body = body_bytes(body)?;
    let xml = std::str::from_utf8(&body).map_err(|_| Failure::bad_request("body is not UTF-8"))?;
    let description =
        atom::parse_queue_description(xml).map_err(|e| Failure::bad_request(e.to_string()))?;
    let update = headers
        .get(IF_MATCH)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"*");
    let (outcome, entry) = app.with_namespace(|ns| {
        let outcome = ns.put_queue(&name, &description, update)?;
        Ok::<_, StateError>((outcome, atom_entry(&name, ns.queue(&name)?)))
    })?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
    };
    Ok((status, [(CONTENT_TYPE, ATOM_ENTRY)], entry).into_response())
}

/// `GET /{queue}`: settings and counts.
async fn get_queue(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
) -> Result<Response, Failure> {
    let (name, _) = path.resolve()?;
    let entry = app
        .with_namespace(|ns| ns.queue(&name).map(|q| atom_entry(&name, q)))
        .map_err(not_found)?;
    Ok(([(CONTENT_TYPE, ATOM_ENTRY)], entry).into_response())
}

/// `DELETE /{queue}`.
async fn delete_queue(
    State(app): State<Arc<AppState>>,
    Path(path): Path<EntityPath>,
) -> Result<StatusCode, Failure> {
    let (name, _) = path.resolve()?;
    app.with_namespace(|ns| ns.delete_queue(&name))
        .map_err(not_found)?;
    Ok(StatusCode::OK)
}
