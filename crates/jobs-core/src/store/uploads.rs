//! Uploads: the record of a file a tenant sent, whose bytes are in the blob store. An import
//! names an upload by id; only the tenant that sent it can name it.
//!
//! Deleting an upload is three steps (see [`crate::uploads`] for the blob in between): the
//! row is marked (`deleted_at`) in a transaction that first locks it and then finds no
//! unfinished import reading it and no schedule naming it; the blob is deleted; the row is
//! forgotten. A marked row is invisible to every reader here, so an import can never start
//! reading a file whose deletion has begun.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{JobStore, StoreError};
use crate::id::TenantId;

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    pub id: Uuid,
    pub tenant_id: TenantId,
    /// Where the bytes are in the blob store (internal: never shown to clients).
    #[serde(skip)]
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// The object's entity tag when recorded: imports read it only while it is unchanged.
    #[serde(skip)]
    pub etag: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What [`JobStore::create_upload`] records.
#[derive(Debug, Clone)]
pub struct NewUpload<'a> {
    pub id: Uuid,
    pub tenant: &'a TenantId,
    pub path: &'a str,
    pub bytes: u64,
    pub sha256: &'a str,
    pub etag: Option<&'a str>,
}

/// Where a page of [`JobStore::list_uploads`] ends: the last upload's creation time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone)]
pub struct UploadPage {
    pub uploads: Vec<Upload>,
    /// Present when more uploads may follow.
    pub next: Option<UploadCursor>,
}

/// What still needs an upload, so that it cannot be deleted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadUse {
    /// A job that has not finished (queued, planning, running, finalizing or cancelling)
    /// reads it: its parameters name it (`upload_id` under its kind).
    Job {
        job_id: Uuid,
        kind: String,
        status: String,
    },
    /// A schedule's job names it at every tick.
    Schedule { schedule_id: Uuid, kind: String },
}

/// What [`JobStore::mark_upload_deleted`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Marked: nothing reads it any more; its blob and row are to be deleted.
    Marked(Upload),
    /// Left alone: still needed.
    InUse(UploadUse),
    /// No live upload of the tenant has this id.
    Missing,
}

/// The columns of an upload row, in [`UploadRow`]'s order.
const UPLOAD_COLUMNS: &str = "id, tenant_id, path, bytes, sha256, etag, created_at";

/// The first thing that still needs upload `$1` of tenant `$2`, if any: an unfinished
/// import (by the partial index `jobs_unfinished_import_upload`), else a schedule.
const UPLOAD_USE: &str = "
    SELECT 'job' AS what, id, kind, status FROM offload.jobs
     WHERE params -> kind ? 'upload_id' AND status NOT IN ('succeeded', 'failed', 'cancelled')
       AND params -> kind ->> 'upload_id' = $1::text AND tenant_id = $2
    UNION ALL
    SELECT 'schedule', id, kind, NULL FROM offload.schedules
     WHERE params -> kind ->> 'upload_id' = $1::text AND tenant_id = $2
    LIMIT 1";

/// The condition, on upload `u`, that no unfinished import reads it and no schedule names
/// it (the same question as [`UPLOAD_USE`], for many uploads at once).
const UNNEEDED: &str = "
    NOT EXISTS (
        SELECT 1 FROM offload.jobs j
         WHERE j.params -> j.kind ? 'upload_id'
           AND j.status NOT IN ('succeeded', 'failed', 'cancelled')
           AND j.params -> j.kind ->> 'upload_id' = u.id::text
           AND j.tenant_id = u.tenant_id)
    AND NOT EXISTS (
        SELECT 1 FROM offload.schedules s
         WHERE s.params -> s.kind ->> 'upload_id' = u.id::text
           AND s.tenant_id = u.tenant_id)";

/// One batch of [`JobStore::mark_expired_uploads`].
#[derive(Debug, Clone, Default)]
pub struct ExpiredBatch {
    /// Expired, unneeded uploads locked: fewer than the limit means none are left.
    pub candidates: usize,
    /// Those marked deleted (the others turned out to be needed after all).
    pub marked: Vec<Upload>,
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    id: Uuid,
    tenant_id: String,
    path: String,
    bytes: i64,
    sha256: String,
    etag: Option<String>,
    created_at: DateTime<Utc>,
}

impl UploadRow {
    fn parse(self) -> Result<Upload, StoreError> {
        let id = self.id;
        let corrupt = |problem: String| StoreError::CorruptUpload { id, problem };
        Ok(Upload {
            id: self.id,
            tenant_id: TenantId::parse(&self.tenant_id).map_err(|e| corrupt(e.to_string()))?,
            bytes: u64::try_from(self.bytes).map_err(|e| corrupt(e.to_string()))?,
            path: self.path,
            sha256: self.sha256,
            etag: self.etag,
            created_at: self.created_at,
        })
    }
}

impl JobStore {
    /// Records a file whose bytes are already in the blob store; returns it as stored.
    /// Recording the same id again (two completions of one direct upload) returns the
    /// first record.
    pub async fn create_upload(&self, new: &NewUpload<'_>) -> Result<Upload, StoreError> {
        let id = new.id;
        let bytes = i64::try_from(new.bytes).map_err(|_| StoreError::CorruptUpload {
            id,
            problem: format!("{} bytes is more than a bigint holds", new.bytes),
        })?;
        let inserted: Option<UploadRow> = sqlx::query_as(&format!(
            "INSERT INTO offload.uploads (id, tenant_id, path, bytes, sha256, etag)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO NOTHING
             RETURNING {UPLOAD_COLUMNS}"
        ))
        .bind(id)
        .bind(new.tenant.as_str())
        .bind(new.path)
        .bind(bytes)
        .bind(new.sha256)
        .bind(new.etag)
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(row) => row.parse(),
            None => match self.upload(new.tenant, id).await? {
                Some(upload) => Ok(upload),
                None if self.upload_deleting(new.tenant, id).await? => {
                    Err(StoreError::UploadDeleted(id))
                }
                None => Err(StoreError::CorruptUpload {
                    id,
                    problem: "recorded for another tenant".into(),
                }),
            },
        }
    }

    /// Whether `tenant` has an upload `id` whose deletion has begun.
    async fn upload_deleting(&self, tenant: &TenantId, id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM offload.uploads
                            WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NOT NULL)",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    /// An upload of `tenant`, or `None` when it does not exist or belongs to another tenant
    /// (indistinguishable on purpose, as for jobs).
    pub async fn upload(&self, tenant: &TenantId, id: Uuid) -> Result<Option<Upload>, StoreError> {
        let row: Option<UploadRow> = sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM offload.uploads
             WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UploadRow::parse).transpose()
    }

    /// A page of `tenant`'s uploads, newest first, after `after` (a cursor from the
    /// previous page); `limit` is clamped to 1–500.
    pub async fn list_uploads(
        &self,
        tenant: &TenantId,
        after: Option<UploadCursor>,
        limit: u32,
    ) -> Result<UploadPage, StoreError> {
        let limit = limit.clamp(1, 500);
        let rows: Vec<UploadRow> = sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM offload.uploads
             WHERE tenant_id = $1 AND deleted_at IS NULL
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC
             LIMIT $4"
        ))
        .bind(tenant.as_str())
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut uploads = rows
            .into_iter()
            .map(UploadRow::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if uploads.len() > limit as usize {
            uploads.truncate(limit as usize);
            uploads.last().map(|u| UploadCursor {
                created_at: u.created_at,
                id: u.id,
            })
        } else {
            None
        };
        Ok(UploadPage { uploads, next })
    }

    /// Marks `tenant`'s upload `id` deleted unless something still needs it (the first step
    /// of a deletion; see the module documentation).
    ///
    /// The row is locked `FOR UPDATE` before the look for users, in an earlier statement:
    /// an import job's insert holds a share lock on the row until it commits (the trigger
    /// `jobs_lock_import_upload`), so the look, which takes its snapshot after the lock is
    /// granted, sees every import created before the mark; one created after it finds the
    /// upload gone when it is planned.
    pub async fn mark_upload_deleted(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<MarkOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let live: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM offload.uploads
             WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
             FOR UPDATE",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            return Ok(MarkOutcome::Missing);
        }
        if let Some(user) = upload_use(&mut tx, tenant, id).await? {
            return Ok(MarkOutcome::InUse(user));
        }
        let row: UploadRow = sqlx::query_as(&format!(
            "UPDATE offload.uploads SET deleted_at = now() WHERE id = $1
             RETURNING {UPLOAD_COLUMNS}"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.parse().map(MarkOutcome::Marked)
    }

    /// Marks deleted up to `limit` live uploads recorded before `created_before` that
    /// nothing needs (the retention sweep's first step), oldest first.
    ///
    /// Candidates are chosen by a first statement that skips what is needed and locks the
    /// rest `FOR UPDATE SKIP LOCKED` (uploads another transaction holds — an import being
    /// created, a deletion under way — wait for the next sweep); a second statement, whose
    /// snapshot is taken after the locks are held, looks again and marks only those still
    /// unneeded: the locking argument is [`JobStore::mark_upload_deleted`]'s.
    pub async fn mark_expired_uploads(
        &self,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let mut tx = self.pool.begin().await?;
        let candidates: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT u.id FROM offload.uploads u
             WHERE u.deleted_at IS NULL AND u.created_at < $1 AND {UNNEEDED}
             ORDER BY u.created_at
             LIMIT $2
             FOR UPDATE OF u SKIP LOCKED"
        ))
        .bind(created_before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if candidates.is_empty() {
            return Ok(ExpiredBatch::default());
        }
        let rows: Vec<UploadRow> = sqlx::query_as(&format!(
            "UPDATE offload.uploads u SET deleted_at = now()
             WHERE u.id = ANY($1) AND {UNNEEDED}
             RETURNING {UPLOAD_COLUMNS}"
        ))
        .bind(&candidates)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ExpiredBatch {
            candidates: candidates.len(),
            marked: rows
                .into_iter()
                .map(UploadRow::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Up to `limit` uploads marked deleted before `marked_before` whose deletion did not
    /// finish (the process stopped between the mark and forgetting the row), oldest first.
    pub async fn unfinished_upload_deletions(
        &self,
        marked_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Upload>, StoreError> {
        let rows: Vec<UploadRow> = sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM offload.uploads
             WHERE deleted_at IS NOT NULL AND deleted_at < $1
             ORDER BY deleted_at
             LIMIT $2"
        ))
        .bind(marked_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(UploadRow::parse).collect()
    }

    /// Which of `ids` have a row, live or marked deleted.
    pub async fn recorded_uploads(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let known: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM offload.uploads WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(known.into_iter().collect())
    }

    /// Forgets an upload marked deleted, once its blob is gone (the last step). Forgetting
    /// one already forgotten does nothing; a live upload is never forgotten.
    pub async fn forget_upload(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM offload.uploads WHERE id = $1 AND deleted_at IS NOT NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn upload_use(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<UploadUse>, StoreError> {
    let row: Option<(String, Uuid, String, Option<String>)> = sqlx::query_as(UPLOAD_USE)
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(
        row.map(|(what, id, kind, status)| match (what.as_str(), status) {
            ("job", Some(status)) => UploadUse::Job {
                job_id: id,
                kind,
                status,
            },
            _ => UploadUse::Schedule {
                schedule_id: id,
                kind,
            },
        }),
    )
}
