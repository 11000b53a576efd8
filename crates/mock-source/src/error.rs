//! Error answers of the mock source, shaped like Offload's own API errors:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::query::QueryError;

/// An error answer: its status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The request parameter at fault, if any.
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong `Authorization: Bearer` token",
        )
    }

    pub(crate) fn throttled() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many concurrent requests; retry later",
        )
    }

    pub(crate) fn injected_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (simulated)",
        )
    }
}

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        Self {
            field: Some(err.field()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                err.to_string(),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "field": self.field }
        });
        (self.status, Json(body)).into_response()
    }
}
