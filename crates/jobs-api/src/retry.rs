//! `POST /v1/jobs/{id}/retry-failed`: send a finished job's failed items again.
//!
//! The store moves the failed items back to pending (in a new retry round) and the job
//! `failed → running`, and the items' messages are written in the same transaction, so
//! either the job is running again with its items on the queue, or nothing changed. The
//! messages' ids carry the round (`{job}:{seq}:retry-{n}`): duplicate detection would
//! drop a copy of the first sending's id.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jobs_core::JobId;
use jobs_core::document::JobDocument;
use jobs_core::envelope::{TraceContext, WorkItem};
use jobs_core::store::RetryOutcome;
use jobs_queue::messages::WorkItemMessage as _;

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::ErrorBody;
use crate::error::ApiError;
use crate::extract::Path;

/// Messages written per statement.
const SEND_BATCH: usize = 500;

/// Send a failed job's failed items again.
///
/// The job runs again (`failed → running`) with only those items; what succeeded stays.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry-failed",
    operation_id = "retryFailedItems",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 202, description = "Running again", body = JobDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`not_finished`, or `nothing_to_retry`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn retry_failed(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(job_id): Path<JobId>,
) -> Result<Response, ApiError> {
    let mut tx = state.store.pool().begin().await?;
    let outcome = state
        .store
        .retry_failed_in(&mut tx, &tenant.0, job_id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    let (job, items) = match outcome {
        RetryOutcome::Retried { job, items } => (job, items),
        RetryOutcome::NotFinished(status) => {
            return Err(ApiError::Conflict {
                code: "not_finished",
                message: format!("the job is {status}; only a finished job can be retried"),
            });
        }
        RetryOutcome::NothingToRetry(status) => {
            return Err(ApiError::Conflict {
                code: "nothing_to_retry",
                message: format!("the job is {status} and has no failed items to retry"),
            });
        }
    };
    let trace = TraceContext::current();
    let mut messages = Vec::with_capacity(items.len());
    for retried in items {
        let item = WorkItem {
            job_id: job.id,
            seq: retried.item.seq,
            kind: retried.item.kind,
            payload: retried.item.payload,
            correlation_id: job.id.to_string(),
            trace: trace.clone(),
        };
        messages.push(
            item.to_message_in_round(retried.round)
                .map_err(ApiError::internal)?,
        );
    }
    for batch in messages.chunks(SEND_BATCH) {
        state
            .sender
            .send_in(&mut tx, &state.queues.work, batch)
            .await?;
    }
    tx.commit().await?;
    state.sender.committed();
    tracing::info!(job_id = %job.id, items = messages.len(), "failed items sent again");
    let doc = JobDocument::new(&job, &state.base_url(&headers));
    Ok((StatusCode::ACCEPTED, Json(doc)).into_response())
}
