//! Authentication: `Authorization: Bearer <api key>`. Keys belong to one tenant and are
//! looked up by their SHA-256; a request sees only its tenant's jobs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jobs_core::TenantId;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated tenant of a request.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let tenant = state
            .store
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Tenant(tenant))
    }
}
