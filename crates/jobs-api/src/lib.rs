//! The HTTP API (axum): submit, status, list, cancel, download, live progress.
//!
//! Not built yet: it arrives with the export issue. The job-status store and queue
//! transport it will write to live in `jobs-core`.
