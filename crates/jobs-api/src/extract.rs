//! Typed path parameters. `Path<JobId>` reads the `{id}` of a route as a job id; a value
//! that is not one names nothing, so it is answered as an unknown id is — `404` with the
//! JSON error naming what was looked for — never with axum's plain-text `400`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jobs_core::JobId;
use jobs_core::schedule::ScheduleId;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// What an id names, for the not-found answer (`"no such job"`).
pub trait Named {
    const WHAT: &'static str;
}

impl Named for JobId {
    const WHAT: &'static str = "job";
}

impl Named for ScheduleId {
    const WHAT: &'static str = "schedule";
}

/// Identifies one upload (`POST /v1/uploads` answers with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UploadId(pub Uuid);

impl Named for UploadId {
    const WHAT: &'static str = "upload";
}

/// The route's one path parameter, as `T`.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: Named + DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Path(id))
            .map_err(|_| ApiError::NotFound(T::WHAT))
    }
}
