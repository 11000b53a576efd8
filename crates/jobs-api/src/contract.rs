//! The HTTP contract: every body the API takes or answers with, as a type. The handlers
//! build these (never free-form JSON), and the OpenAPI document ([`crate::openapi`]) is
//! generated from them and from the handlers' `#[utoipa::path]` attributes, so the
//! document cannot drift from what is served.
//!
//! Request bodies are read by hand-written checks that name the field at fault (a `422`
//! with `field`), not by serde's messages; the request types here describe what those
//! checks accept. The one body whose shape depends on the deployment, the job request, is
//! described by the job kinds registered ([`jobs_sdk::JobType::request_schema`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use jobs_core::JobStatus;
use jobs_core::document::JobDocument;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Every error: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `not_found`, `invalid`, `unauthorized`, `conflict` codes such
    /// as `not_cancellable`, `unavailable`, `internal`, …
    pub code: String,
    /// For people: what was wrong and, where there is one, what to do.
    pub message: String,
    /// The request field at fault (`export.columns[2]`), for `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: &str, message: &str, field: Option<&str>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.to_owned(),
                field: field.map(str::to_owned),
            },
        }
    }
}

/// A job request, the body of `POST /v1/jobs` and the `job` of a schedule: `kind`, the
/// kind's parameters under the kind's own name, and optionally `notify`. The document
/// served lists one variant per job kind the deployment runs.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // Describes the body; the checks in `jobs::validate_request` read it.
pub struct JobRequest {
    /// The job's kind; its parameters are the field of the same name.
    pub kind: String,
    pub notify: Option<Notify>,
}

/// Where to announce the job's end.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Notify {
    /// Receives a signed `POST` with the job document when the job ends. Must be http(s),
    /// at most 2048 characters, and (unless the deployment allows it) not a loopback,
    /// private or link-local address.
    #[schema(format = "uri", max_length = 2048)]
    pub webhook_url: String,
}

/// One Server-Sent Event of `GET /v1/jobs/{id}/events`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Describes the stream; `events` writes it with axum's `Event`.
pub struct JobEvent {
    /// `job` (the data is the job document: first, and when the job has finished) or
    /// `progress` (`id`, `status`, `progress`).
    #[schema(examples("job", "progress"))]
    pub event: String,
    /// JSON text.
    pub data: String,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobDocument>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/jobs` filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Jobs per page, 1 to 500 (50 when absent).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// Paging of a list without filters of its own.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (50 when absent).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A short-lived link to a job's file (also in the `Location` of the `302`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadLink {
    #[schema(format = "uri")]
    pub download_url: String,
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The query of a signed download link, as `GET /v1/jobs/{id}/result` made it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Unix time after which the link is refused.
    pub expires: Option<i64>,
    pub signature: Option<String>,
    /// Which file of the job: absent for its result, `rejects` for an import's report.
    pub file: Option<String>,
}

/// A schedule: a job request made at every tick of a cron expression in a time zone.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDocument {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds where
    /// the deployment allows them.
    pub cron: String,
    /// An IANA time zone (`Europe/Amsterdam`); ticks follow its wall clock.
    pub timezone: String,
    /// The job request each tick submits, as stored (normalized).
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
    pub enabled: bool,
    /// `null` while paused, or when the expression never matches again.
    #[schema(required = true)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// `next_run_at` on the schedule's wall clock, with its offset.
    #[schema(required = true)]
    pub next_run_at_local: Option<String>,
    #[schema(required = true)]
    pub last_run_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_run_at_local: Option<String>,
    #[schema(format = Uuid, required = true)]
    pub last_job_id: Option<String>,
    /// Due ticks skipped (the schedule was behind) since it was created.
    pub skipped_ticks: u64,
    /// Why the last tick made no job.
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Recent runs, newest first (`GET /v1/schedules/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub runs: Option<Vec<ScheduleRunDocument>>,
}

/// One fired tick of a schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRunDocument {
    pub tick_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// The job the tick made; `null` if none, or it was deleted since.
    #[schema(format = Uuid, required = true)]
    pub job_id: Option<String>,
    #[schema(required = true)]
    pub job_status: Option<JobStatus>,
    /// Older due ticks skipped when this one fired.
    pub skipped: u64,
}

/// A page of schedules, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleDocument>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `POST /v1/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body; the checks in `schedules::create` read it.
pub struct NewScheduleRequest {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub cron: String,
    /// `UTC` when absent.
    pub timezone: Option<String>,
    pub job: JobRequest,
}

/// `PATCH /v1/schedules/{id}`: the fields to change; those absent stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body; the checks in `schedules::update` read it.
pub struct ScheduleChangeRequest {
    // Optional, not nullable: `null` is refused rather than read as "leave it".
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub cron: Option<String>,
    #[schema(nullable = false)]
    pub timezone: Option<String>,
    #[schema(nullable = false)]
    pub job: Option<JobRequest>,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

/// A file for imports.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadDocument {
    pub upload_id: Uuid,
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// When the retention sweep may delete it; `null` when uploads are kept.
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A page of uploads, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadList {
    pub uploads: Vec<UploadDocument>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Where to `PUT` a file straight into Blob Storage, then `POST complete_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectUpload {
    pub upload_id: Uuid,
    #[schema(format = "uri")]
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Headers the `PUT` must carry.
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
    #[schema(format = "uri")]
    pub complete_url: String,
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` / `ready`, or why not (`failing`, `database unavailable`).
    pub status: String,
    /// The loops of the process that keep failing (liveness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<FailingLoop>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailingLoop {
    #[serde(rename = "loop")]
    pub name: String,
    pub last_failure: String,
}
