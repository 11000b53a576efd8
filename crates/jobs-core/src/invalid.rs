//! The error of a request field that is wrong, whichever part of a request it is in.

/// A request field that is wrong, named as a path into the request (`export.columns[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

/// An [`Invalid`] for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}
