//! Job types: what a kind of job takes as parameters and how its jobs are split into work
//! items — the half of a job kind that the API and the enqueuer run. The other half, the
//! processors of its work items and the finalizer that turns their outputs into the job's
//! result, is the worker's ([`crate::registry`]).
//!
//! A team adds its own kind by implementing [`JobType`] (and a processor and finalizer) and
//! registering them at start-up; `examples/sum-kind` is a complete one. The contract:
//! - [`JobType::kind`] is a stable string stored with every job (`"acme.report"`); never
//!   rename it once jobs exist.
//! - [`JobType::validate`] runs in the API on `POST /v1/jobs`, on the object under the
//!   kind's own name (`{"kind": "acme.report", "acme.report": {…}}`). It refuses bad input
//!   with the field at fault, and returns the parameters to store, normalized: the planner
//!   gets exactly these.
//! - A kind that reads an upload (`POST /v1/uploads`) names it as `upload_id` in the
//!   parameters it stores (`{"acme.report": {"upload_id": "…"}}`), written as a `Uuid`
//!   displays (lowercase, hyphenated: store the parsed `Uuid`): the upload is then kept
//!   while such a job is unfinished or a schedule submits one, and a job being created
//!   holds its upload's row against a deletion (the store's rule, for every kind:
//!   migration 13). Its planner reads the upload only through the store
//!   (`JobStore::upload`, which hides uploads being deleted), as the import's does.
//! - [`JobType::plan`] runs in the enqueuer and must be deterministic enough to be retried:
//!   the plan is recorded before any item is sent, and a redelivered request re-sends the
//!   recorded plan, never a new one. Items carry metadata (ranges, ids), not data.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use jobs_core::id::TenantId;
use jobs_core::invalid::Invalid;
use jobs_core::kind::{JobKind, WorkKind};
use jobs_core::store::{Job, PlannedItem};

pub use jobs_core::env::KindEnv;

/// Why parameters were refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The request is wrong: answered 422 with the field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Something the check needs is not answering (the blob store): answered 503.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed the check: answered 503 when it cannot serve (saturated,
    /// unreachable, restarting), 500 otherwise.
    #[error("the database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ParamsError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(Invalid {
            field: field.into(),
            message: message.into(),
        })
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No retry can help: the job fails with this reason.
    #[error("{0}")]
    Fatal(String),
    /// Try again later (the enqueuer retries with back-off, then fails the job).
    #[error("{0}")]
    Retryable(String),
}

/// One kind of job, as the API and the enqueuer see it.
#[async_trait]
pub trait JobType: Send + Sync {
    /// The stable kind string, also the request field holding the parameters.
    fn kind(&self) -> JobKind;

    /// The kind of the job's finalize message (handled by the worker's finalizer for this
    /// job kind).
    fn finalize_kind(&self) -> WorkKind;

    /// Checks the parameters of `tenant`'s submission; returns what to store.
    async fn validate(
        &self,
        tenant: &TenantId,
        params: &Value,
        env: &KindEnv,
    ) -> Result<Value, ParamsError>;

    /// The JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) of the object under the
    /// kind's name in a request: what `GET /openapi.json` shows clients, generated SDKs and
    /// fuzzers. [`JobType::validate`] stays the judge of what is accepted; the schema
    /// describes it. The default says only that it is an object.
    fn request_schema(&self) -> Value {
        serde_json::json!({ "type": "object" })
    }

    /// Whether this kind's result may name a rejects report (`rejects_path`: the input rows
    /// it refused, with why), served at `GET /v1/jobs/{id}/rejects`.
    fn reports_rejects(&self) -> bool {
        false
    }

    /// Splits an accepted job (its stored parameters are `job.params[kind]`) into work
    /// items, numbered from 0.
    async fn plan(&self, job: &Job, env: &KindEnv) -> Result<Vec<PlannedItem>, PlanError>;
}

/// The job types a deployment accepts, by kind.
#[derive(Clone, Default)]
pub struct JobTypes {
    types: BTreeMap<JobKind, Arc<dyn JobType>>,
}

impl fmt::Debug for JobTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

impl JobTypes {
    /// # Panics
    /// When the kind is registered already, or is not a valid kind string (a literal given
    /// to `JobKind::from_static`): a programming error, found at start-up.
    pub fn register(&mut self, job_type: Arc<dyn JobType>) -> &mut Self {
        let kind = job_type.kind();
        assert!(
            JobKind::parse(kind.as_str()).is_ok(),
            "job kind `{kind}` is not a valid kind string"
        );
        assert!(
            self.types.insert(kind.clone(), job_type).is_none(),
            "job kind `{kind}` registered twice"
        );
        self
    }

    pub fn get(&self, kind: &JobKind) -> Option<&Arc<dyn JobType>> {
        self.types.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &JobKind> {
        self.types.keys()
    }

    /// The parameters stored for `job`'s own kind (`job.params[kind]`).
    pub fn params_of(job: &Job) -> Result<&Value, PlanError> {
        job.params
            .get(job.kind.as_str())
            .ok_or_else(|| PlanError::Fatal(format!("the job has no `{}` parameters", job.kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind whose string a typo broke.
    struct Misspelt;

    #[async_trait]
    impl JobType for Misspelt {
        fn kind(&self) -> JobKind {
            JobKind::from_static("Acme Report")
        }

        fn finalize_kind(&self) -> WorkKind {
            WorkKind::from_static("acme.report.finalize")
        }

        async fn validate(
            &self,
            _: &TenantId,
            p: &Value,
            _: &KindEnv,
        ) -> Result<Value, ParamsError> {
            Ok(p.clone())
        }

        async fn plan(&self, _: &Job, _: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
            Ok(Vec::new())
        }
    }

    #[test]
    #[should_panic(expected = "job kind `Acme Report` is not a valid kind string")]
    fn a_kind_string_that_does_not_parse_stops_the_start_up() {
        JobTypes::default().register(Arc::new(Misspelt));
    }
}
