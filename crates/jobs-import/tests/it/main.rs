//! The import kind's tests through the whole pipeline: round trips against COPY, rejects
//! and their locks, errors, Azure ranges, and the uploads it reads (their API, direct
//! uploads, retention).
#![allow(clippy::unwrap_used)]

mod import;
mod import_azure;
mod import_errors;
mod import_locks;
mod uploads;
mod uploads_retention;
