//! `/v1/uploads`: files for imports.
//!
//! `POST /v1/uploads` takes the file as the request body (any content type; CSV or NDJSON
//! for an import) and streams it into the blob store at `uploads/{tenant}/{id}` — never
//! whole in memory — counting its bytes and SHA-256 on the way; the upload is recorded only
//! once the object is complete, so a broken-off upload leaves no record. The size limit is
//! `api.max_upload_bytes`, checked against `Content-Length` up front and against the bytes
//! as they arrive (the JSON body limit does not apply here). Answers `201` with
//! `{"upload_id", "bytes", "sha256", "created_at"}`; an import then names `upload_id`.
//!
//! Direct uploads, where the blob store can sign URLs (Azure with an account key or an
//! identity), keep the file from passing through the API: `POST /v1/uploads/direct` answers
//! `201` with `{"upload_id", "upload_url", "method": "PUT", "headers", "expires_at",
//! "complete_url"}`; the client PUTs the file to `upload_url` (Put Blob with the header
//! `x-ms-blob-type: BlockBlob`, or Put Block + Put Block List for files over 5,000 MiB)
//! before `expires_at` (`api.upload_link_ttl_secs`), then calls `POST
//! /v1/uploads/{id}/complete`, which reads the blob once to record its size and SHA-256
//! (refusing it, and deleting it, above `api.max_upload_bytes`) and answers as
//! `POST /v1/uploads` does. The URL is signed for `uploads/{tenant}/{id}` only, so a tenant
//! can complete only its own uploads. Imports read an upload only while its entity tag is
//! the one recorded, so writing to the URL again after completing makes imports of it fail
//! rather than read a changed file. Elsewhere `POST /v1/uploads/direct` is `409`.
//!
//! `GET /v1/uploads/{id}` describes an upload of the caller's tenant; another tenant's
//! uploads are 404, as unknown ones. `GET /v1/uploads?limit=&cursor=` lists the tenant's
//! uploads, newest first, paged as `/v1/jobs` is. Every upload shows `expires_at`: when the
//! retention sweep may delete it (`uploads.retention_hours` after it was recorded; `null`
//! when uploads are kept).
//!
//! `DELETE /v1/uploads/{id}` deletes the file and its record (`204`), unless an import that
//! reads it has not finished or a schedule imports it: then `409 upload_in_use`, naming
//! the job or schedule. The order of the steps is [`jobs_core::uploads`]'s.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use jobs_core::blob::hex;
use jobs_core::store::{NewUpload, StoreError, Upload, UploadCursor, UploadUse};
use jobs_core::uploads::upload_path;
use jobs_core::uploads::{DeleteError, Deleted, delete_upload};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Tenant;
use crate::contract::{DirectUpload, ErrorBody, PageQuery, UploadDocument, UploadList};
use crate::error::ApiError;
use crate::extract::{Path, UploadId};
use crate::paging;

fn document(state: &AppState, u: &Upload) -> UploadDocument {
    let expires_at = state
        .cfg
        .uploads
        .retention()
        .and_then(|r| chrono::Duration::from_std(r).ok())
        .map(|r| u.created_at + r);
    UploadDocument {
        upload_id: u.id,
        bytes: u.bytes,
        sha256: u.sha256.clone(),
        created_at: u.created_at,
        expires_at,
    }
}

fn missing() -> ApiError {
    ApiError::NotFound("upload")
}

/// Records a stored file as an upload and answers `201` with its document. A deletion
/// that began meanwhile makes it unknown.
async fn record(state: &AppState, new: &NewUpload<'_>) -> Result<Response, ApiError> {
    let upload = state.store.create_upload(new).await.map_err(|e| match e {
        StoreError::UploadDeleted(_) => missing(),
        other => other.into(),
    })?;
    tracing::info!(upload_id = %new.id, tenant = %new.tenant, bytes = new.bytes, "upload recorded");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/uploads/{}", new.id))],
        Json(document(state, &upload)),
    )
        .into_response())
}

fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge {
        message: format!(
            "the file is larger than this API accepts ({limit} bytes, api.max_upload_bytes)"
        ),
    }
}

/// How much of a refused upload is still read, and thrown away, before the answer.
const DRAIN_BYTES: u64 = 16 << 20;
/// How long that reading may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads what the client is still sending (up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]) before
/// answering `err`. A client that is still writing its body when the server answers and
/// closes gets a reset connection instead of the answer (the bytes it sent were never read);
/// reading them first, as web servers do with a lingering close, lets it read the `413`.
async fn refuse(stream: &mut BodyDataStream, err: ApiError) -> ApiError {
    let drain = async {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_BYTES {
                break;
            }
        }
    };
    // Either way the answer is the same; a slow client past the deadline may miss it.
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    err
}

/// Upload a file for imports.
///
/// The file is the request body (any content type; CSV or NDJSON for an import), streamed
/// to the blob store; the upload is recorded once the whole file is stored.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "createUpload",
    tag = "uploads",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file"),
    responses(
        (status = 201, body = UploadDocument, headers(("Location" = String, description = "The upload")),
            links(("getUpload" = (operation_id = "getUpload", parameters(("id" = "$response.body#/upload_id")))), ("deleteUpload" = (operation_id = "deleteUpload", parameters(("id" = "$response.body#/upload_id")))), ("completeUpload" = (operation_id = "completeUpload", parameters(("id" = "$response.body#/upload_id")))))),
        (status = 400, description = "The body is empty or was broken off", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than `api.max_upload_bytes`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.cfg.api.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit) {
        return Err(refuse(&mut stream, too_large(limit)).await);
    }
    let id = Uuid::now_v7();
    let path = upload_path(&tenant.0, id);
    let mut writer = state
        .blobs
        .writer(&path)
        .await
        .map_err(ApiError::internal)?;
    let mut received: u64 = 0;
    let failed: Option<ApiError> = loop {
        match stream.next().await {
            None => break None,
            Some(Err(e)) => {
                break Some(ApiError::BadRequest {
                    message: format!("the upload was broken off: {e}"),
                });
            }
            Some(Ok(chunk)) => {
                received += chunk.len() as u64;
                if received > limit {
                    break Some(refuse(&mut stream, too_large(limit)).await);
                }
                if let Err(e) = writer.write(&chunk).await {
                    break Some(ApiError::internal(e));
                }
            }
        }
    };
    if let Some(e) = failed {
        writer.abort().await;
        return Err(e);
    }
    if received == 0 {
        writer.abort().await;
        return Err(ApiError::BadRequest {
            message: "the body is empty: send the file as the request body".into(),
        });
    }
    let written = writer.finish().await.map_err(ApiError::internal)?;
    let (_, etag) = state.blobs.head(&path).await.map_err(ApiError::internal)?;
    let new = NewUpload {
        id,
        tenant: &tenant.0,
        path: &path,
        bytes: written.bytes,
        sha256: &written.sha256,
        etag: etag.as_deref(),
    };
    record(&state, &new).await
}

/// Ask for a signed URL to upload a file straight to Blob Storage.
///
/// `PUT` the file to `upload_url` with `headers` before `expires_at`, then `POST
/// complete_url`. Only where the blob store can sign URLs (Azure); elsewhere `409`.
#[utoipa::path(
    post,
    path = "/v1/uploads/direct",
    operation_id = "createDirectUpload",
    tag = "uploads",
    responses(
        (status = 201, body = DirectUpload),
        (status = 401, body = ErrorBody),
        (status = 409, description = "`direct_upload_unavailable`: send the file to POST /v1/uploads", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn direct(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = Uuid::now_v7();
    let path = upload_path(&tenant.0, id);
    let ttl = state.cfg.api.upload_link_ttl();
    let url = state
        .blobs
        .signed_upload_url(&path, ttl)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::Conflict {
            code: "direct_upload_unavailable",
            message: "this deployment's blob store cannot sign upload URLs; send the file as \
                      the body of POST /v1/uploads"
                .into(),
        })?;
    let expires_at = chrono::Utc::now() + ttl;
    let base = state.base_url(&headers);
    Ok((
        StatusCode::CREATED,
        Json(DirectUpload {
            upload_id: id,
            upload_url: url,
            method: "PUT".to_owned(),
            headers: [("x-ms-blob-type".to_owned(), "BlockBlob".to_owned())].into(),
            expires_at,
            complete_url: format!("{base}/v1/uploads/{id}/complete"),
        }),
    )
        .into_response())
}

/// Record a direct upload once its file is in place.
///
/// Reads the blob once for its size and SHA-256. Completing a completed upload answers
/// `200` with it.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    operation_id = "completeUpload",
    tag = "uploads",
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 201, body = UploadDocument),
        (status = 200, description = "Completed already", body = UploadDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`not_uploaded`, or `upload_changed`", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(UploadId(id)): Path<UploadId>,
) -> Result<Response, ApiError> {
    if let Some(done) = state.store.upload(&tenant.0, id).await? {
        return Ok((StatusCode::OK, Json(document(&state, &done))).into_response());
    }
    let path = upload_path(&tenant.0, id);
    let (size, etag) = match state.blobs.head(&path).await {
        Ok(found) => found,
        Err(e) if e.is_not_found() => {
            return Err(ApiError::Conflict {
                code: "not_uploaded",
                message: "nothing has been uploaded to this upload's URL yet".into(),
            });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let limit = state.cfg.api.max_upload_bytes;
    if size > limit {
        if let Err(e) = state.blobs.delete(&path).await {
            tracing::warn!(error = %e, "could not delete an oversized direct upload");
        }
        return Err(too_large(limit));
    }
    // The digest of exactly the version the entity tag names.
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = state
        .blobs
        .read_if(&path, etag.as_deref())
        .await
        .map_err(ApiError::internal)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_changed() {
                ApiError::Conflict {
                    code: "upload_changed",
                    message: "the file was written again while it was being recorded".into(),
                }
            } else {
                ApiError::internal(e)
            }
        })?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    let sha256 = hex(&hasher.finalize());
    let new = NewUpload {
        id,
        tenant: &tenant.0,
        path: &path,
        bytes,
        sha256: &sha256,
        etag: etag.as_deref(),
    };
    record(&state, &new).await
}

/// An upload: its size, SHA-256 and expiry.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}",
    operation_id = "getUpload",
    tag = "uploads",
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 200, body = UploadDocument),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(UploadId(id)): Path<UploadId>,
) -> Result<Json<UploadDocument>, ApiError> {
    let upload = state
        .store
        .upload(&tenant.0, id)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(document(&state, &upload)))
}

/// The tenant's uploads, newest first.
#[utoipa::path(
    get,
    path = "/v1/uploads",
    operation_id = "listUploads",
    tag = "uploads",
    params(PageQuery),
    responses(
        (status = 400, description = "The query string cannot be read: a parameter given twice, or a number out of range", body = ErrorBody),
        (status = 200, body = UploadList),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<PageQuery>,
) -> Result<Json<UploadList>, ApiError> {
    let (limit, after) = paging::read(q)?;
    let after = after.map(|(created_at, id)| UploadCursor { created_at, id });
    let page = state.store.list_uploads(&tenant.0, after, limit).await?;
    Ok(Json(UploadList {
        uploads: page.uploads.iter().map(|u| document(&state, u)).collect(),
        next_cursor: page.next.map(|c| paging::encode_cursor(c.created_at, c.id)),
    }))
}

/// Delete an upload: its file and its record.
///
/// Refused while an import that reads it has not finished, or a schedule imports it.
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}",
    operation_id = "deleteUpload",
    tag = "uploads",
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`upload_in_use`, naming the job or schedule", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(UploadId(id)): Path<UploadId>,
) -> Result<StatusCode, ApiError> {
    match delete_upload(&state.store, &state.blobs, &tenant.0, id).await {
        Ok(Deleted::Deleted(upload)) => {
            tracing::info!(upload_id = %id, tenant = %tenant.0, bytes = upload.bytes, "upload deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(Deleted::Missing) => Err(missing()),
        Ok(Deleted::InUse(UploadUse::Job {
            job_id,
            kind,
            status,
        })) => Err(ApiError::Conflict {
            code: "upload_in_use",
            message: format!(
                "{kind} job {job_id} ({status}) reads this upload; delete it once the job has \
                 finished, or cancel the job first"
            ),
        }),
        Ok(Deleted::InUse(UploadUse::Schedule { schedule_id, kind })) => Err(ApiError::Conflict {
            code: "upload_in_use",
            message: format!(
                "schedule {schedule_id} submits jobs of kind {kind} that read this upload at \
                     every tick; delete the schedule first"
            ),
        }),
        // Marked and hidden already: the enqueuers' sweep deletes the blob and the record
        // later (retention on or off), so the upload is gone as far as the client can tell.
        Err(DeleteError::Blob(e)) => {
            tracing::warn!(upload_id = %id, error = %e, "the upload's blob could not be deleted now; the sweep will");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(DeleteError::Store(e)) => Err(e.into()),
    }
}
