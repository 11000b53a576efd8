//! Uploads: the record of a file a tenant sent, whose bytes are in the blob store. An import
//! names an upload by id; only the tenant that sent it can name it.

use chrono::{DateTime, Utc};
use serde::Serialize;
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
        let inserted: Option<UploadRow> = sqlx::query_as(
            "INSERT INTO offload.uploads (id, tenant_id, path, bytes, sha256, etag)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO NOTHING
             RETURNING id, tenant_id, path, bytes, sha256, etag, created_at",
        )
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
            None => self
                .upload(new.tenant, id)
                .await?
                .ok_or_else(|| StoreError::CorruptUpload {
                    id,
                    problem: "recorded for another tenant".into(),
                }),
        }
    }

    /// An upload of `tenant`, or `None` when it does not exist or belongs to another tenant
    /// (indistinguishable on purpose, as for jobs).
    pub async fn upload(&self, tenant: &TenantId, id: Uuid) -> Result<Option<Upload>, StoreError> {
        let row: Option<UploadRow> = sqlx::query_as(
            "SELECT id, tenant_id, path, bytes, sha256, etag, created_at FROM offload.uploads
             WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UploadRow::parse).transpose()
    }
}
