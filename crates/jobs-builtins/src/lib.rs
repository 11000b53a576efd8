//! The kinds Offload ships: export, import and ingest, each a crate of its own registered
//! through the SDK exactly as a team's own kind is (`examples/sum-kind`). The shipped
//! binaries start with these; a team's own binary adds its kinds to them, or chooses others.

use jobs_sdk::{JobTypes, Kinds, Registry};

/// Every built-in kind.
pub fn kinds() -> Kinds {
    Kinds::default()
        .with(jobs_export::kind())
        .with(jobs_import::kind())
        .with(jobs_ingest::kind())
}

/// The built-in kinds' job types (what the API and the enqueuer run).
pub fn job_types() -> JobTypes {
    kinds().job_types
}

/// The built-in kinds' processors and finalizers (what the worker runs).
pub fn registry() -> Registry {
    kinds().processors
}
