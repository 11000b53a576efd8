//! The one error type of the API: a status code and a JSON body
//! `{"error": {"code", "message", "field"?}}`. Server errors keep their cause in the log
//! (inside the request's span) and show the client a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jobs_core::export::Invalid;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("no such schedule")]
    NoSuchSchedule,
    /// Not found, saying what (`"no such upload"`).
    #[error("{0}")]
    Missing(&'static str),
    #[error("{message}")]
    TooLarge { message: String },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Gone { message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<jobs_core::store::StoreError> for ApiError {
    fn from(e: jobs_core::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<jobs_core::schedule::ScheduleError> for ApiError {
    fn from(e: jobs_core::schedule::ScheduleError) -> Self {
        Self::internal(e)
    }
}

impl From<jobs_core::queue::QueueError> for ApiError {
    fn from(e: jobs_core::queue::QueueError) -> Self {
        Self::internal(e)
    }
}

impl From<jobs_core::sqlx::Error> for ApiError {
    fn from(e: jobs_core::sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match &self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                self.to_string(),
                None,
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such job".to_owned(),
                None,
            ),
            Self::NoSuchSchedule => (StatusCode::NOT_FOUND, "not_found", self.to_string(), None),
            Self::Missing(what) => (StatusCode::NOT_FOUND, "not_found", (*what).to_owned(), None),
            Self::TooLarge { message } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                message.clone(),
                None,
            ),
            Self::BadRequest { message } => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                message.clone(),
                None,
            ),
            Self::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                message.clone(),
                Some(field.clone()),
            ),
            Self::Conflict { code, message } => {
                (StatusCode::CONFLICT, *code, message.clone(), None)
            }
            Self::Gone { message } => (StatusCode::GONE, "gone", message.clone(), None),
            Self::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    None,
                )
            }
        };
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let Some(f) = field {
            body["error"]["field"] = json!(f);
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED
            && let Ok(v) = "Bearer".parse()
        {
            resp.headers_mut().insert("www-authenticate", v);
        }
        resp
    }
}
