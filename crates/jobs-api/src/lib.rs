//! The HTTP API (axum, JSON, `/v1`).
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/jobs` | submit a job (`202` + `Location`; `200` for a repeated `Idempotency-Key`) |
//! | `GET /v1/jobs` | list the tenant's jobs, newest first (`status`, `kind`, `limit`, `cursor`) |
//! | `GET /v1/jobs/{id}` | the job document |
//! | `POST /v1/jobs/{id}/cancel` | stop a job: remaining items are skipped |
//! | `POST /v1/jobs/{id}/retry-failed` | send a failed job's failed items again |
//! | `GET /v1/jobs/{id}/result` | a redirect to a short-lived signed download link (a job that failed, was cancelled or is not finished: its state and error) |
//! | `GET /v1/jobs/{id}/rejects` | an import's rejects report, the same way |
//! | `GET /v1/jobs/{id}/events` | live progress (Server-Sent Events) |
//! | `POST /v1/schedules`, `GET /v1/schedules` | create a schedule (`201`), list them |
//! | `GET`, `PATCH`, `DELETE /v1/schedules/{id}` | a schedule with its recent runs; change it; delete it |
//! | `POST /v1/schedules/{id}/pause`, `…/resume` | stop and restart its ticks |
//! | `POST /v1/uploads` | a file for an import, streamed to the blob store (`201`) |
//! | `POST /v1/uploads/direct` | a signed URL to upload a file straight to Blob Storage |
//! | `POST /v1/uploads/{id}/complete` | records a direct upload's size and SHA-256 |
//! | `GET /v1/uploads` | list the tenant's uploads, newest first (`limit`, `cursor`) |
//! | `GET`, `DELETE /v1/uploads/{id}` | an upload's size, SHA-256 and expiry; delete it |
//! | `GET /v1/downloads/{id}` | the file, for holders of a valid signed link |
//! | `GET /health/live`, `/health/ready` | probes |
//! | `GET /openapi.json` | this table as an OpenAPI 3.1 document, generated from the handlers ([`openapi`]) |
//!
//! Every error is `{"error": {"code", "message", "field"?}}` (see [`ApiError`]); a database
//! that cannot serve a request now is `503` with `Retry-After`.
//!
//! Every `/v1/jobs`, `/v1/schedules` and `/v1/uploads` route needs `Authorization: Bearer <api key>`; a tenant never sees
//! another tenant's jobs (they answer 404, as unknown jobs do). The API never calls another
//! service: it writes the job and its first message in one transaction and reads status
//! from the job store.

mod auth;
pub mod contract;
mod download;
mod error;
mod events;
mod extract;
mod jobs;
pub mod openapi;
mod paging;
mod retry;
mod schedules;
mod serve;
mod uploads;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Router, middleware};
use jobs_core::blob::BlobStore;
use jobs_core::dataset::Catalog;
use jobs_core::store::JobStore;
use jobs_core::{Config, TenantId};
use jobs_queue::messages::Queues;
use jobs_queue::outbox::TxSender;
use jobs_queue::runtime::Runtime;
use jobs_sdk::jobtype::{JobTypes, KindEnv};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::contract::Health;

pub use download::LinkSigner;
pub use error::ApiError;

/// Shared by every request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub store: JobStore,
    /// Submissions write the job and its first message in one transaction: the Postgres
    /// transport joins it, any other goes through the outbox.
    pub sender: TxSender,
    pub queues: Queues,
    pub catalog: Arc<Catalog>,
    pub blobs: BlobStore,
    /// The job kinds accepted, and what their validation may use.
    pub job_types: JobTypes,
    pub kind_env: KindEnv,
    pub signer: LinkSigner,
    /// Job changes announced by the store, fanned out to SSE clients.
    pub job_events: broadcast::Sender<Value>,
    /// `GET /openapi.json`, made at start-up for the kinds of `job_types`.
    pub openapi: axum::body::Bytes,
}

impl AppState {
    /// The base URL links are built on: `api.public_url`, or the request's Host.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if !self.cfg.api.public_url.is_empty() {
            return self.cfg.api.public_url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| self.cfg.api.listen.to_string());
        format!("http://{host}")
    }
}

/// Every route of the API, with its OpenAPI description.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(retry::retry_failed))
        .routes(routes!(download::result))
        .routes(routes!(download::rejects))
        .routes(routes!(events::events))
        // Uploads stream to the blob store under their own limit (api.max_upload_bytes),
        // not the JSON body limit.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(uploads::create, uploads::list))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(uploads::direct))
        .routes(routes!(uploads::get, uploads::delete))
        .routes(routes!(uploads::complete))
        .routes(routes!(download::download))
        .routes(routes!(schedules::create, schedules::list))
        .routes(routes!(
            schedules::get,
            schedules::update,
            schedules::delete
        ))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(live))
        .routes(routes!(ready))
}

pub fn router(state: AppState) -> Router {
    let limit = state.cfg.api.max_body_bytes;
    let (router, _) = routes().split_for_parts();
    router
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(limit))
        // Outside every route and the fallback: whatever axum answers by itself is put
        // in the JSON error format too.
        .layer(middleware::map_response_with_state(
            state.clone(),
            error::json_errors,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness.
///
/// `503` while some loop of this process cannot be kept running (it keeps panicking or
/// ending soon after each restart), naming it: the orchestrator then restarts the process.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "health",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "Failing loops, named", body = Health),
    )
)]
async fn live() -> (StatusCode, axum::Json<Health>) {
    let failing = jobs_core::supervise::Liveness::process().failing();
    if failing.is_empty() {
        return (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok".into(),
                failing: Vec::new(),
            }),
        );
    }
    let loops = failing
        .iter()
        .map(|(name, cause)| contract::FailingLoop {
            name: name.to_string(),
            last_failure: cause.to_string(),
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Health {
            status: "failing".into(),
            failing: loops,
        }),
    )
}

/// Readiness: the database answers.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "health",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    )
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let health = |status: &str| {
        axum::Json(Health {
            status: status.into(),
            failing: Vec::new(),
        })
    };
    match jobs_core::sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
    {
        Ok(_) => (StatusCode::OK, health("ready")),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                health("database unavailable"),
            )
        }
    }
}

/// Prepares the API's state: registers the dev key (if configured), starts the job events
/// listener and, for a transport outside Postgres, the outbox relay.
pub async fn state(
    rt: &Runtime,
    job_types: JobTypes,
    stop: CancellationToken,
) -> Result<AppState, jobs_core::store::StoreError> {
    let (cfg, store, sender) = (rt.cfg.clone(), rt.store.clone(), rt.tx_sender.clone());
    let dev_key = cfg.auth.dev_api_key.expose_secret();
    if !dev_key.is_empty() {
        // Validated at start-up.
        if let Ok(tenant) = TenantId::parse(&cfg.auth.dev_tenant) {
            let secret = cfg.auth.dev_webhook_secret.expose_secret();
            store
                .ensure_tenant(&tenant, (!secret.is_empty()).then_some(secret))
                .await?;
            store.add_api_key(&tenant, dev_key).await?;
        }
    }
    let (job_events, _) = broadcast::channel(1024);
    events::spawn_listener(store.pool(), job_events.clone(), stop.clone()).await?;
    if let TxSender::Outbox(outbox) = &sender {
        tokio::spawn(outbox.clone().relay_until_stopped(stop));
    }
    Ok(AppState {
        signer: LinkSigner::new(cfg.download.signing_key.expose_secret()),
        cfg,
        store,
        sender,
        queues: Queues::default(),
        catalog: rt.catalog.clone(),
        blobs: rt.blobs.clone(),
        openapi: openapi::document(&job_types).to_string().into(),
        job_types,
        kind_env: rt.kind_env(),
        job_events,
    })
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    let (limits, grace) = (state.cfg.api.clone(), state.cfg.queue.shutdown_grace());
    serve::serve(listener, router(state), &limits, grace, shutdown).await
}
