//! The worker's half of a job kind: processors by work item kind, and finalizers by job
//! kind.
//!
//! Kinds are stable strings (`export.chunk`); registering the same kind twice is a
//! programming error and panics at start-up, before any message is taken.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jobs_core::envelope::WorkItem;
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job};
use jobs_core::{JobKind, WorkKind};

use crate::jobtype::KindEnv;

/// The job's own parameters (`job.params[kind]`, as its job type stored them).
pub fn job_params<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, ProcessError> {
    let params = job
        .params
        .get(job.kind.as_str())
        .ok_or_else(|| ProcessError::fatal(format!("the job has no {} parameters", job.kind)))?;
    serde_json::from_value(params.clone()).map_err(|e| {
        ProcessError::fatal(format!(
            "the job's {} parameters are invalid: {e}",
            job.kind
        ))
    })
}

/// Every item's recorded output, decoded, in item order: what a finalizer starts from.
pub fn item_outputs<T: serde::de::DeserializeOwned>(
    items: &[ItemRecord],
) -> Result<Vec<T>, ProcessError> {
    items
        .iter()
        .map(|i| {
            let output = i.output.clone().ok_or_else(|| {
                ProcessError::fatal(format!("item {} has no recorded output", i.item.seq))
            })?;
            serde_json::from_value(output).map_err(|e| {
                ProcessError::fatal(format!("item {} output is invalid: {e}", i.item.seq))
            })
        })
        .collect()
}

/// Processes one kind of work item. Must be idempotent: it may run more than once for the
/// same item (write outputs to deterministic places).
#[async_trait]
pub trait Processor: Send + Sync {
    /// The stable kind string this processor handles.
    fn kind(&self) -> WorkKind;

    /// Processes the item; the returned document is recorded as the item's output.
    async fn process(
        &self,
        ctx: &KindEnv,
        job: &Job,
        item: &WorkItem,
    ) -> Result<serde_json::Value, ProcessError>;
}

/// Turns a job whose items all succeeded into its result (fan-in). Must be idempotent.
#[async_trait]
pub trait Finalizer: Send + Sync {
    fn job_kind(&self) -> JobKind;

    /// The kind of the finalize message this finalizer answers.
    fn finalize_kind(&self) -> WorkKind;

    /// Builds the result from the items' outputs; the returned document becomes the job's
    /// result.
    async fn finalize(
        &self,
        ctx: &KindEnv,
        job: &Job,
        items: &[ItemRecord],
    ) -> Result<serde_json::Value, ProcessError>;

    /// Clean-up after the result is recorded (best effort).
    async fn cleanup(&self, _ctx: &KindEnv, _job: &Job, _items: &[ItemRecord]) {}
}

#[derive(Default, Clone)]
pub struct Registry {
    processors: HashMap<WorkKind, Arc<dyn Processor>>,
    finalizers: HashMap<WorkKind, Arc<dyn Finalizer>>,
    by_job_kind: HashMap<JobKind, Arc<dyn Finalizer>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("processors", &self.processors.keys().collect::<Vec<_>>())
            .field("finalizers", &self.finalizers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// # Panics
    /// When a processor for the same kind is already registered, or its kind is not a
    /// valid kind string.
    pub fn register(&mut self, p: Arc<dyn Processor>) -> &mut Self {
        let kind = p.kind();
        assert!(
            WorkKind::parse(kind.as_str()).is_ok(),
            "work item kind `{kind}` is not a valid kind string"
        );
        assert!(
            self.processors.insert(kind.clone(), p).is_none(),
            "two processors registered for work item kind `{kind}`"
        );
        self
    }

    /// # Panics
    /// When a finalizer for the same job kind or finalize kind is already registered, or a
    /// kind is not a valid kind string.
    pub fn register_finalizer(&mut self, f: Arc<dyn Finalizer>) -> &mut Self {
        let (kind, job_kind) = (f.finalize_kind(), f.job_kind());
        assert!(
            WorkKind::parse(kind.as_str()).is_ok() && JobKind::parse(job_kind.as_str()).is_ok(),
            "finalizer kinds `{kind}` / `{job_kind}`: not valid kind strings"
        );
        assert!(
            self.finalizers.insert(kind.clone(), f.clone()).is_none(),
            "two finalizers registered for `{kind}`"
        );
        assert!(
            self.by_job_kind.insert(job_kind.clone(), f).is_none(),
            "two finalizers registered for job kind `{job_kind}`"
        );
        self
    }

    pub fn processor(&self, kind: &WorkKind) -> Option<&Arc<dyn Processor>> {
        self.processors.get(kind)
    }

    pub fn finalizer(&self, kind: &WorkKind) -> Option<&Arc<dyn Finalizer>> {
        self.finalizers.get(kind)
    }

    pub fn finalizer_for_job(&self, kind: &JobKind) -> Option<&Arc<dyn Finalizer>> {
        self.by_job_kind.get(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Twice;

    #[async_trait]
    impl Processor for Twice {
        fn kind(&self) -> WorkKind {
            WorkKind::from_static("test.twice")
        }

        async fn process(
            &self,
            _: &KindEnv,
            _: &Job,
            _: &WorkItem,
        ) -> Result<serde_json::Value, ProcessError> {
            Ok(serde_json::Value::Null)
        }
    }

    #[test]
    #[should_panic(expected = "two processors registered for work item kind `test.twice`")]
    fn duplicate_registration_panics() {
        let mut r = Registry::default();
        r.register(Arc::new(Twice));
        r.register(Arc::new(Twice));
    }
}
