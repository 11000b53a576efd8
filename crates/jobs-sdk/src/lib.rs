//! The job-kind SDK: what a kind of job is made of, and how a deployment chooses its kinds.
//!
//! A kind has two halves. Its [`JobType`] (in [`jobtype`]) checks a submission's parameters
//! in the API and splits an accepted job into work items in the enqueuer. Its
//! [`Processor`]s and [`Finalizer`] (in [`registry`]) run in the worker: one work item at a
//! time, then the fan-in that turns every item's output into the job's result. Both halves
//! see the same narrow [`KindEnv`] — the pool, the blob store, the dataset catalog and the
//! configuration — and nothing of the service running them.
//!
//! A deployment's kinds are a [`Kinds`]: the built-in ones (`jobs-builtins`) and a team's
//! own, registered the same way. `examples/sum-kind` is a complete kind of its own. This
//! crate depends on `jobs-core` only; the services depend on it, never on a particular kind.

pub mod jobtype;
pub mod registry;

use std::sync::Arc;

pub use jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};
pub use registry::{Finalizer, Processor, Registry, item_outputs, job_params};

/// One job kind, whole: its job type, the processors of its work items, its finalizer.
#[derive(Clone)]
pub struct Kind {
    pub job_type: Arc<dyn JobType>,
    pub processors: Vec<Arc<dyn Processor>>,
    pub finalizer: Arc<dyn Finalizer>,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind")
            .field("kind", &self.job_type.kind())
            .finish_non_exhaustive()
    }
}

/// The job kinds a deployment runs: their job types (validation and planning, for the API
/// and the enqueuer) and their processors and finalizers (for the worker).
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    pub job_types: JobTypes,
    pub processors: Registry,
}

impl Kinds {
    /// Adds a job kind: its job type, the processors of its work items and its finalizer.
    ///
    /// # Panics
    /// When a kind is registered twice (a programming error, found at start-up).
    pub fn with(mut self, kind: Kind) -> Self {
        self.job_types.register(kind.job_type);
        for p in kind.processors {
            self.processors.register(p);
        }
        self.processors.register_finalizer(kind.finalizer);
        self
    }
}
