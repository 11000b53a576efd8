//! `/v1/jobs`: submit, read, list, cancel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobs_core::document::JobDocument;
use jobs_core::envelope::TraceContext;
use jobs_core::store::{CreateOutcome, Job, JobFilter, JobStore, ListCursor, NewJob, StoreError};
use jobs_core::{JobId, JobKind, JobStatus};
use jobs_queue::messages::JobMessage;
use jobs_sdk::jobtype::ParamsError;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::{ErrorBody, JobList, JobListQuery, JobRequest};
use crate::error::ApiError;
use crate::extract::Path;
use crate::paging;

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The caller's job `id`; another tenant's is unknown (404).
pub(crate) async fn tenant_job(
    state: &AppState,
    tenant: &Tenant,
    id: JobId,
) -> Result<Job, ApiError> {
    state
        .store
        .get(&tenant.0, id)
        .await?
        .ok_or(ApiError::NotFound("job"))
}

fn doc(state: &AppState, headers: &HeaderMap, job: &Job) -> JobDocument {
    JobDocument::new(job, &state.base_url(headers))
}

/// Submit a job.
///
/// The job and its first message are written in one transaction; the answer comes before
/// any planning. A repeated `Idempotency-Key` with the same request answers `200` with the
/// job it made.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "submitJob",
    tag = "jobs",
    request_body = JobRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters: the same key and request make one job"),
        ("X-Request-Id" = Option<String>, Header, description = "Carried through the job's messages as its correlation id"),
    ),
    responses(
        (status = 202, description = "Accepted", body = JobDocument, headers(("Location" = String, description = "The job")),
            links(("getJob" = (operation_id = "getJob", parameters(("id" = "$response.body#/id")))), ("cancelJob" = (operation_id = "cancelJob", parameters(("id" = "$response.body#/id")))), ("retryFailedItems" = (operation_id = "retryFailedItems", parameters(("id" = "$response.body#/id")))), ("getJobResult" = (operation_id = "getJobResult", parameters(("id" = "$response.body#/id")))), ("getJobRejects" = (operation_id = "getJobRejects", parameters(("id" = "$response.body#/id")))))),
        (status = 200, description = "The job this Idempotency-Key made already", body = JobDocument, headers(("Location" = String))),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with a different request", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "A field is wrong; `field` names it", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        message: format!("the body is not valid JSON: {e}"),
    })?;
    let (kind, params) = validate_request(&state, &tenant, &request).await?;

    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
            Some(
                k.ok_or_else(|| {
                    ApiError::invalid("Idempotency-Key", "must be 1-255 visible ASCII characters")
                })?
                .to_owned(),
            )
        }
    };
    if let Some(k) = &idempotency_key
        && k.starts_with(jobs_core::schedule::IDEMPOTENCY_PREFIX)
    {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must not start with `schedule:` (reserved for the jobs schedules make)",
        ));
    }
    let new = NewJob {
        id: JobId::new(),
        tenant_id: tenant.0.clone(),
        kind,
        params,
        idempotency_key,
    };
    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| new.id.to_string());

    // The job row and its first message commit together: a job is never accepted without
    // being planned, and never planned without being accepted.
    let mut tx = state.store.pool().begin().await?;
    let outcome = match state.store.create_in(&mut tx, &new).await {
        Ok(o) => o,
        Err(StoreError::IdempotencyConflict { key }) => {
            return Err(ApiError::Conflict {
                code: "idempotency_conflict",
                message: format!(
                    "Idempotency-Key {key:?} was already used with a different request"
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let CreateOutcome::Created(job) = &outcome {
        let msg = JobMessage::Requested {
            job_id: job.id,
            correlation_id,
            trace: TraceContext::current(),
        };
        state
            .sender
            .send_in(&mut tx, &state.queues.jobs, &[msg.to_message()])
            .await?;
    }
    tx.commit().await?;
    state.sender.committed();

    let job = outcome.job();
    let body = Json(doc(&state, &headers, job));
    let location = format!("/v1/jobs/{}", job.id);
    Ok(match outcome {
        CreateOutcome::Created(_) => {
            tracing::info!(job_id = %job.id, tenant = %job.tenant_id, "job accepted");
            (StatusCode::ACCEPTED, [(header::LOCATION, location)], body).into_response()
        }
        CreateOutcome::Existing(_) => {
            (StatusCode::OK, [(header::LOCATION, location)], body).into_response()
        }
    })
}

/// Checks a job request (`{"kind", <kind>: {…}, "notify"?}`) as `POST /v1/jobs` does, for
/// submissions and schedules alike: returns the kind and the parameters to store.
pub(crate) async fn validate_request(
    state: &AppState,
    tenant: &Tenant,
    request: &Value,
) -> Result<(JobKind, Value), ApiError> {
    let obj = request
        .as_object()
        .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))?;
    let kind = match obj.get("kind") {
        Some(Value::String(k)) => JobKind::parse(k)
            .ok()
            .filter(|k| state.job_types.get(k).is_some())
            .ok_or_else(|| {
                let known: Vec<&str> = state.job_types.kinds().map(JobKind::as_str).collect();
                ApiError::invalid(
                    "kind",
                    format!(
                        "job kind `{k}` is not supported; supported: {}",
                        known.join(", ")
                    ),
                )
            })?,
        Some(_) => return Err(ApiError::invalid("kind", "must be a string")),
        None => return Err(ApiError::invalid("kind", "is required")),
    };
    for key in obj.keys() {
        if !["kind", "notify", kind.as_str()].contains(&key.as_str()) {
            return Err(ApiError::invalid(key.as_str(), "is not a known field"));
        }
    }
    let job_type = state
        .job_types
        .get(&kind)
        .ok_or_else(|| ApiError::invalid("kind", "is not supported"))?;
    let raw = obj
        .get(kind.as_str())
        .ok_or_else(|| ApiError::invalid(kind.as_str(), format!("is required for a {kind} job")))?;
    let checked = job_type
        .validate(&tenant.0, raw, &state.kind_env)
        .await
        .map_err(|e| match e {
            ParamsError::Invalid(i) => ApiError::from(i),
            ParamsError::Unavailable(why) => ApiError::Unavailable(why),
            ParamsError::Db(e) => ApiError::database(&e),
        })?;
    let notify = parse_notify(obj.get("notify"), state.cfg.notifier.allow_private_networks)?;
    let mut params = json!({ kind.as_str(): checked });
    if let Some(n) = notify {
        params["notify"] = n;
    }
    Ok((kind, params))
}

fn parse_notify(notify: Option<&Value>, allow_private: bool) -> Result<Option<Value>, ApiError> {
    let Some(n) = notify else { return Ok(None) };
    if n.is_null() {
        return Ok(None);
    }
    let obj = n
        .as_object()
        .ok_or_else(|| ApiError::invalid("notify", "must be an object"))?;
    for key in obj.keys() {
        if key != "webhook_url" {
            return Err(ApiError::invalid(
                format!("notify.{key}"),
                "is not a known field",
            ));
        }
    }
    let Some(raw) = obj.get("webhook_url") else {
        return Ok(None);
    };
    let raw = raw
        .as_str()
        .ok_or_else(|| ApiError::invalid("notify.webhook_url", "must be a string"))?;
    let parsed = url::Url::parse(raw)
        .map_err(|e| ApiError::invalid("notify.webhook_url", format!("is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() || raw.len() > 2048 {
        return Err(ApiError::invalid(
            "notify.webhook_url",
            "must be an http(s) URL of at most 2048 characters",
        ));
    }
    // Names are checked again when the webhook is sent (they may resolve anywhere).
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    let internal = literal.is_some_and(|ip| !jobs_core::net::is_public(ip))
        || parsed
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
    if internal && !allow_private {
        return Err(ApiError::invalid(
            "notify.webhook_url",
            "must not point at a loopback, private or link-local address",
        ));
    }
    Ok(Some(json!({ "webhook_url": raw })))
}

/// A job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "getJob",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 200, body = JobDocument),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job for this tenant", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Json<JobDocument>, ApiError> {
    let job = tenant_job(&state, &tenant, id).await?;
    Ok(Json(doc(&state, &headers, &job)))
}

/// The tenant's jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    params(JobListQuery),
    responses(
        (status = 400, description = "The query string cannot be read: a parameter given twice, or a number out of range", body = ErrorBody),
        (status = 200, body = JobList),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(q): Query<JobListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let status = q
        .status
        .map(|s| {
            s.parse::<JobStatus>()
                .map_err(|e| ApiError::invalid("status", e.to_string()))
        })
        .transpose()?;
    let kind = q
        .kind
        .map(|k| JobKind::parse(&k).map_err(|e| ApiError::invalid("kind", e.to_string())))
        .transpose()?;
    let limit = paging::limit(q.limit)?;
    let after = paging::cursor(q.cursor)?.map(|(created_at, id)| ListCursor { created_at, id });
    let page = state
        .store
        .list(&tenant.0, &JobFilter { status, kind }, after, limit)
        .await?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(|j| doc(&state, &headers, j)).collect(),
        next_cursor: page
            .next
            .as_ref()
            .map(|c| paging::encode_cursor(c.created_at, c.id)),
    }))
}

/// Cancel a job.
///
/// A queued job ends now; a planned one stops sending its items (those not started are
/// skipped) and ends when the last running one does. Cancelling a cancelled job is
/// harmless.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancelJob",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "The job")),
    responses(
        (status = 202, description = "Cancelling or cancelled", body = JobDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The job has finished: `not_cancellable`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    let job = tenant_job(&state, &tenant, id).await?;
    let moved = match job.status {
        // Nothing was planned yet: the job ends now, and its finished event is written in
        // the same transaction (through the outbox when there is one: a broker outage
        // delays the event only).
        JobStatus::Queued => {
            let mut tx = state.store.pool().begin().await?;
            let moved = JobStore::transition_in(&mut tx, job.id, JobStatus::Cancelled).await?;
            if let Some(j) = &moved {
                let event = JobMessage::Finished {
                    job_id: j.id,
                    status: j.status,
                    trace: TraceContext::current(),
                };
                state
                    .sender
                    .send_in(&mut tx, &state.queues.events, &[event.to_message()])
                    .await?;
            }
            tx.commit().await?;
            state.sender.committed();
            moved
        }
        // Workers skip the items not yet started; the last completion ends the job.
        JobStatus::Planning | JobStatus::Running => {
            state
                .store
                .transition(job.id, JobStatus::Cancelling)
                .await?
        }
        JobStatus::Cancelling | JobStatus::Cancelled => Some(job.clone()),
        other => {
            return Err(ApiError::Conflict {
                code: "not_cancellable",
                message: format!("the job is {other} and can no longer be cancelled"),
            });
        }
    };
    // Lost a race with another status change: report where the job is now.
    let job = match moved {
        Some(j) => j,
        None => state
            .store
            .get(&tenant.0, job.id)
            .await?
            .ok_or(ApiError::NotFound("job"))?,
    };
    Ok((StatusCode::ACCEPTED, Json(doc(&state, &headers, &job))).into_response())
}
