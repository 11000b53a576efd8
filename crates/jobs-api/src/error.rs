//! The one error type of the API: a status code and a JSON body
//! `{"error": {"code", "message", "field"?}}`. Server errors keep their cause in the log
//! (inside the request's span) and show the client a generic message. A database that
//! cannot serve the request now (its pool exhausted, the server restarting) is `503` with
//! `Retry-After`, not a server error. Errors axum answers by itself (a body over the
//! limit, a method a route does not take, an extractor's rejection) are rewritten into the
//! same format by [`json_errors`].

use crate::AppState;
use crate::contract::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobs_core::invalid::Invalid;

/// Seconds a client is told to wait (`Retry-After`) when the database is unavailable: a
/// pool exhausted by a burst frees within about that.
const RETRY_AFTER_SECS: u32 = 2;

/// Bytes read of a body axum made itself (its rejections are one short line).
const MAX_PLAIN_ERROR: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    /// No such thing (`"job"`, `"schedule"`, `"upload"`, `"route"`) for this tenant: one
    /// answer for unknown ids, malformed ids and another tenant's ids alike.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A signed link that is not valid (`403`).
    #[error("{0}")]
    Forbidden(&'static str),
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
    /// Not found for a reason worth its own code (`"no_result_file"`).
    #[error("{message}")]
    Absent { code: &'static str, message: String },
    /// The database cannot serve the request now: `503` with `Retry-After`.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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

    /// A database error: unavailable (`503`) when the database could not serve the request
    /// now and may later (no connection free within the pool's acquire timeout, none to be
    /// made, the server out of connections or shutting down); any other is internal.
    pub fn database(e: &jobs_core::sqlx::Error) -> Self {
        use jobs_core::sqlx::Error as E;
        let unavailable = match e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) => true,
            // Class 53: insufficient resources (53300: too many connections); 57P01–57P03:
            // the server is shutting down or starting.
            E::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("53") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        };
        if unavailable {
            Self::Unavailable(e.to_string())
        } else {
            Self::internal(e)
        }
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
        match &e {
            jobs_core::store::StoreError::Db(db) => Self::database(db),
            _ => Self::internal(e),
        }
    }
}

impl From<jobs_core::schedule::ScheduleError> for ApiError {
    fn from(e: jobs_core::schedule::ScheduleError) -> Self {
        match &e {
            jobs_core::schedule::ScheduleError::Db(db) => Self::database(db),
            _ => Self::internal(e),
        }
    }
}

impl From<jobs_queue::QueueError> for ApiError {
    fn from(e: jobs_queue::QueueError) -> Self {
        match &e {
            jobs_queue::QueueError::Db(db) => Self::database(db),
            _ => Self::internal(e),
        }
    }
}

impl From<jobs_core::sqlx::Error> for ApiError {
    fn from(e: jobs_core::sqlx::Error) -> Self {
        Self::database(&e)
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
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", self.to_string(), None),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", (*why).to_owned(), None),
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
            Self::Absent { code, message } => (StatusCode::NOT_FOUND, *code, message.clone(), None),
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "the database could not serve the request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "the service is overloaded or its database is unavailable; \
                         try again in {RETRY_AFTER_SECS} s"
                    ),
                    None,
                )
            }
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
        let body = ErrorBody::new(code, &message, field.as_deref());
        let mut resp = (status, Json(body)).into_response();
        let headers = resp.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        resp
    }
}

/// Middleware (`map_response`): an error response not in the JSON error format — one axum
/// made by itself — is rewritten into it, keeping its status and headers (`Allow` of a
/// `405`). Axum's own text becomes the message of a client error; a server error's text
/// is logged, not shown.
pub async fn json_errors(State(state): State<AppState>, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let said = |default: &str| {
        if text.is_empty() {
            default.to_owned()
        } else {
            text.clone()
        }
    };
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!(
                "the request body is larger than the limit of {} bytes (api.max_body_bytes)",
                state.cfg.api.max_body_bytes
            ),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (
                "method_not_allowed",
                format!("this route does not take that method; it takes {allowed}"),
            )
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", said("unsupported content type"))
        }
        StatusCode::NOT_FOUND => ("not_found", said("not found")),
        StatusCode::UNAUTHORIZED => ("unauthorized", said("missing or invalid API key")),
        s if s.is_server_error() => {
            tracing::error!(%status, cause = %text, "request failed");
            ("internal", "internal error".to_owned())
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid", said("the request is invalid")),
        _ => ("bad_request", said("the request is malformed")),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody::new(code, &message, None)).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}
