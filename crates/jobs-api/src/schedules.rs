//! `/v1/schedules`: jobs created on a cron expression in a time zone.
//!
//! A schedule holds a job request (the body `POST /v1/jobs` takes), validated here with the
//! same function submissions use, and stored normalized; the enqueuers create a job from it
//! at every tick. Creation and change (`PATCH`) share their checks: a schedule cannot be
//! changed into one that could not have been created. The API only writes the schedule and
//! its next tick: it never fires one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jobs_core::kind::JobKind;
use jobs_core::schedule::change::{checked_name, checked_timing};
use jobs_core::schedule::{
    NewSchedule, Schedule, ScheduleChange, ScheduleCursor, ScheduleId, ScheduleRun, ScheduleStore,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::{
    ErrorBody, NewScheduleRequest, PageQuery, ScheduleChangeRequest, ScheduleDocument,
    ScheduleList, ScheduleRunDocument,
};
use crate::error::ApiError;
use crate::extract::Path;
use crate::jobs::validate_request;
use crate::paging;

/// Runs shown with a schedule.
const RECENT_RUNS: u32 = 20;

fn store(state: &AppState) -> ScheduleStore {
    ScheduleStore::new(state.store.pool().clone())
}

const NO_SUCH: ApiError = ApiError::NotFound("schedule");

async fn tenant_schedule(
    state: &AppState,
    tenant: &Tenant,
    id: ScheduleId,
) -> Result<Schedule, ApiError> {
    store(state).get(&tenant.0, id).await?.ok_or(NO_SUCH)
}

/// The schedule's document: times in UTC and, beside them, on the schedule's own wall
/// clock.
fn doc(s: &Schedule) -> ScheduleDocument {
    let tt = s.timetable().ok();
    let local = |t: Option<DateTime<Utc>>| match (t, &tt) {
        (Some(t), Some(tt)) => Some(tt.local(t).to_rfc3339()),
        _ => None,
    };
    let mut job = s.params.clone();
    job["kind"] = json!(s.kind);
    ScheduleDocument {
        id: s.id.to_string(),
        name: s.name.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        job,
        enabled: s.enabled,
        next_run_at: s.next_run_at,
        next_run_at_local: local(s.next_run_at),
        last_run_at: s.last_run_at,
        last_run_at_local: local(s.last_run_at),
        last_job_id: s.last_job_id.map(|j| j.to_string()),
        skipped_ticks: s.skipped_ticks,
        last_error: s.last_error.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        runs: None,
    }
}

fn run_doc(r: &ScheduleRun) -> ScheduleRunDocument {
    ScheduleRunDocument {
        tick_at: r.tick_at,
        fired_at: r.fired_at,
        job_id: r.job_id.map(|j| j.to_string()),
        job_status: r.job_status,
        skipped: r.skipped,
    }
}

/// The body as a JSON object holding only `known` fields (an unknown one is named).
fn object_with(body: &Bytes, known: &[&str]) -> Result<serde_json::Map<String, Value>, ApiError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!("the body is not valid JSON: {e}"),
    })?;
    let Value::Object(obj) = request else {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    };
    if let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(key.as_str(), "is not a known field"));
    }
    Ok(obj)
}

/// A string field; `null` counts as absent (creation's defaults apply).
fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

/// A string field of a change: absent leaves it as it is; `null` is refused rather than
/// silently ignored.
fn changed_string(
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

/// The job request of a schedule, validated as `POST /v1/jobs` validates it; errors are
/// named from the schedule's body (`job.export.dataset`).
async fn checked_job(
    state: &AppState,
    tenant: &Tenant,
    job: &Value,
) -> Result<(JobKind, Value), ApiError> {
    if !job.is_object() {
        return Err(ApiError::invalid(
            "job",
            "must be an object: the body POST /v1/jobs takes",
        ));
    }
    validate_request(state, tenant, job)
        .await
        .map_err(|e| match e {
            ApiError::Invalid { field, message } => ApiError::Invalid {
                field: if field.is_empty() {
                    "job".to_owned()
                } else {
                    format!("job.{field}")
                },
                message,
            },
            other => other,
        })
}

/// Create a schedule.
///
/// Its job request is checked as `POST /v1/jobs` checks one (errors name `job.…`).
#[utoipa::path(
    post,
    path = "/v1/schedules",
    operation_id = "createSchedule",
    tag = "schedules",
    request_body = NewScheduleRequest,
    responses(
        (status = 201, body = ScheduleDocument, headers(("Location" = String, description = "The schedule")),
            links(("getSchedule" = (operation_id = "getSchedule", parameters(("id" = "$response.body#/id")))), ("updateSchedule" = (operation_id = "updateSchedule", parameters(("id" = "$response.body#/id")))), ("pauseSchedule" = (operation_id = "pauseSchedule", parameters(("id" = "$response.body#/id")))), ("resumeSchedule" = (operation_id = "resumeSchedule", parameters(("id" = "$response.body#/id")))), ("deleteSchedule" = (operation_id = "deleteSchedule", parameters(("id" = "$response.body#/id")))))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = object_with(&body, &["name", "cron", "timezone", "job"])?;
    let name = checked_name(
        string_field(&obj, "name")?.ok_or_else(|| ApiError::invalid("name", "is required"))?,
    )?;
    let cron =
        string_field(&obj, "cron")?.ok_or_else(|| ApiError::invalid("cron", "is required"))?;
    let timezone = string_field(&obj, "timezone")?.unwrap_or("UTC");
    let (_, next_run_at) = checked_timing(
        cron,
        timezone,
        state.cfg.schedules.allow_sub_minute,
        Utc::now(),
    )?;
    let job = obj
        .get("job")
        .ok_or_else(|| ApiError::invalid("job", "is required"))?;
    let (kind, params) = checked_job(&state, &tenant, job).await?;
    let schedule = store(&state)
        .create(&NewSchedule {
            id: ScheduleId::new(),
            tenant_id: tenant.0.clone(),
            name,
            cron: cron.trim().to_owned(),
            timezone: timezone.to_owned(),
            kind,
            params,
            next_run_at,
        })
        .await?;
    tracing::info!(schedule_id = %schedule.id, tenant = %schedule.tenant_id, %next_run_at, "schedule created");
    let location = format!("/v1/schedules/{}", schedule.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(doc(&schedule)),
    )
        .into_response())
}

/// Change a schedule.
///
/// Changes any of `name`, `cron`, `timezone`, `job`, `enabled`; the others stay. Checked
/// as creation checks them; a new cron expression or time zone moves the next tick to the
/// new timetable's first tick after now (the rule: `jobs_core::schedule::change`). Applied
/// under the row's lock, so a tick fires with the whole old schedule or the whole new one.
#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    operation_id = "updateSchedule",
    tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule")),
    request_body = ScheduleChangeRequest,
    responses(
        (status = 200, body = ScheduleDocument),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<ScheduleId>,
    body: Bytes,
) -> Result<Json<ScheduleDocument>, ApiError> {
    let obj = object_with(&body, &["name", "cron", "timezone", "job", "enabled"])?;
    let job = match obj.get("job") {
        Some(job) => Some(checked_job(&state, &tenant, job).await?),
        None => None,
    };
    let change = ScheduleChange {
        name: changed_string(&obj, "name")?,
        cron: changed_string(&obj, "cron")?,
        timezone: changed_string(&obj, "timezone")?,
        job,
        enabled: match obj.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::invalid("enabled", "must be true or false")),
        },
    };
    let allow_sub_minute = state.cfg.schedules.allow_sub_minute;
    let schedule = store(&state)
        .update(&tenant.0, id, |current| {
            Ok::<_, ApiError>(current.changed(&change, allow_sub_minute, Utc::now())?)
        })
        .await?
        .ok_or(NO_SUCH)?;
    tracing::info!(schedule_id = %schedule.id, tenant = %schedule.tenant_id, next_run_at = ?schedule.next_run_at, "schedule changed");
    Ok(Json(doc(&schedule)))
}

/// A schedule and its recent runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    operation_id = "getSchedule",
    tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 200, body = ScheduleDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<ScheduleId>,
) -> Result<Json<ScheduleDocument>, ApiError> {
    let schedule = tenant_schedule(&state, &tenant, id).await?;
    let runs = store(&state).runs(schedule.id, RECENT_RUNS).await?;
    Ok(Json(ScheduleDocument {
        runs: Some(runs.iter().map(run_doc).collect()),
        ..doc(&schedule)
    }))
}

/// The tenant's schedules, newest first.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    operation_id = "listSchedules",
    tag = "schedules",
    params(PageQuery),
    responses(
        (status = 400, description = "The query string cannot be read: a parameter given twice, or a number out of range", body = ErrorBody),
        (status = 200, body = ScheduleList),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<PageQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    let (limit, after) = paging::read(q)?;
    let after = after.map(|(created_at, id)| ScheduleCursor { created_at, id });
    let page = store(&state).list(&tenant.0, after, limit).await?;
    Ok(Json(ScheduleList {
        schedules: page.schedules.iter().map(doc).collect(),
        next_cursor: page
            .next
            .as_ref()
            .map(|c| paging::encode_cursor(c.created_at, c.id)),
    }))
}

/// Pause a schedule: no tick fires until it is resumed.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    operation_id = "pauseSchedule",
    tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 200, body = ScheduleDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<ScheduleId>,
) -> Result<Json<ScheduleDocument>, ApiError> {
    let schedule = store(&state).pause(&tenant.0, id).await?.ok_or(NO_SUCH)?;
    Ok(Json(doc(&schedule)))
}

/// Resume a schedule: it fires again from the first tick after now.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    operation_id = "resumeSchedule",
    tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 200, body = ScheduleDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<ScheduleId>,
) -> Result<Json<ScheduleDocument>, ApiError> {
    let current = tenant_schedule(&state, &tenant, id).await?;
    let next = current
        .timetable()
        .map_err(|e| ApiError::internal(format!("stored schedule {}: {e:?}", current.id)))?
        .next_after(Utc::now());
    let schedule = store(&state)
        .resume(&tenant.0, current.id, next)
        .await?
        .ok_or(NO_SUCH)?;
    Ok(Json(doc(&schedule)))
}

/// Delete a schedule: it and its run records go; its jobs stay.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    operation_id = "deleteSchedule",
    tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<ScheduleId>,
) -> Result<StatusCode, ApiError> {
    if store(&state).delete(&tenant.0, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(NO_SUCH)
    }
}
