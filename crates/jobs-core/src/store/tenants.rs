//! Tenants, their API keys (stored as SHA-256 hashes) and webhook secrets, and the record
//! of webhook delivery attempts.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{JobStore, StoreError};
use crate::id::{JobId, TenantId};

/// A new API key: `ofl_` and 32 random bytes, base64url. Shown once; only its hash is kept.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ofl_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes, base64.
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// One webhook delivery attempt.
#[derive(Debug, Clone)]
pub struct WebhookAttempt<'a> {
    pub job_id: JobId,
    pub attempt: u32,
    pub url: &'a str,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: u32,
}

impl JobStore {
    /// Creates the tenant if missing and returns its webhook secret. `secret` sets the
    /// secret of a new tenant (a random one otherwise); an existing tenant keeps its own.
    pub async fn ensure_tenant(
        &self,
        tenant: &TenantId,
        secret: Option<&str>,
    ) -> Result<String, StoreError> {
        let fresh = secret.map(str::to_owned).unwrap_or_else(new_webhook_secret);
        let secret: String = sqlx::query_scalar(
            "WITH ins AS (
                INSERT INTO offload.tenants (id, webhook_secret) VALUES ($1, $2)
                ON CONFLICT (id) DO NOTHING RETURNING webhook_secret)
             SELECT webhook_secret FROM ins
             UNION ALL SELECT webhook_secret FROM offload.tenants WHERE id = $1
             LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(&fresh)
        .fetch_one(&self.pool)
        .await?;
        Ok(secret)
    }

    /// Registers an API key for a tenant (idempotent).
    pub async fn add_api_key(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
        let prefix: String = key.chars().take(8).collect();
        sqlx::query(
            "INSERT INTO offload.api_keys (key_hash, tenant_id, prefix) VALUES ($1, $2, $3)
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key_hash(key))
        .bind(tenant.as_str())
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant an API key belongs to, if the key exists and is not revoked.
    pub async fn authenticate(&self, key: &str) -> Result<Option<TenantId>, StoreError> {
        let tenant: Option<String> = sqlx::query_scalar(
            "SELECT tenant_id FROM offload.api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash(key))
        .fetch_optional(&self.pool)
        .await?;
        Ok(tenant.and_then(|t| TenantId::parse(&t).ok()))
    }

    pub async fn webhook_secret(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT webhook_secret FROM offload.tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn record_webhook_attempt(&self, a: &WebhookAttempt<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO offload.webhook_attempts
                 (job_id, attempt, url, status_code, error, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job_id, attempt) DO UPDATE SET status_code = EXCLUDED.status_code,
                 error = EXCLUDED.error, duration_ms = EXCLUDED.duration_ms,
                 attempted_at = now()",
        )
        .bind(a.job_id.as_uuid())
        .bind(a.attempt as i32)
        .bind(a.url)
        .bind(a.status_code.map(i32::from))
        .bind(a.error)
        .bind(a.duration_ms as i32)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delivery attempts of a job's webhook, oldest first: (attempt, status, error).
    pub async fn webhook_attempts(
        &self,
        job_id: JobId,
    ) -> Result<Vec<(i32, Option<i32>, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT attempt, status_code, error FROM offload.webhook_attempts
             WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(job_id.as_uuid())
        .fetch_all(&self.pool)
        .await?)
    }
}
