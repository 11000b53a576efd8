//! Job types: what a kind of job takes as parameters and how its jobs are split into work
//! items — the half of a job kind that the API and the enqueuer run. The other half, the
//! processors of its work items and the finalizer that turns their outputs into the job's
//! result, is registered with the worker (`jobs_worker::Registry`).
//!
//! A team adds its own kind by implementing [`JobType`] (and a processor and finalizer) and
//! registering them at start-up; `examples/sum-kind` is a complete one. The contract:
//! - [`JobType::kind`] is a stable string stored with every job (`"acme.report"`); never
//!   rename it once jobs exist.
//! - [`JobType::validate`] runs in the API on `POST /v1/jobs`, on the object under the
//!   kind's own name (`{"kind": "acme.report", "acme.report": {…}}`). It refuses bad input
//!   with the field at fault, and returns the parameters to store, normalized: the planner
//!   gets exactly these.
//! - [`JobType::plan`] runs in the enqueuer and must be deterministic enough to be retried:
//!   the plan is recorded before any item is sent, and a redelivered request re-sends the
//!   recorded plan, never a new one. Items carry metadata (ranges, ids), not data.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::dataset::{Catalog, CatalogError};
use crate::export::{self, CheckError, ExportSpec, Invalid};
use crate::id::TenantId;
use crate::kind::{JobKind, WorkKind};
use crate::store::{Job, PlannedItem};

/// What validation and planning may use.
#[derive(Clone, Debug)]
pub struct KindEnv {
    pub pool: PgPool,
    pub catalog: Arc<Catalog>,
    pub blobs: BlobStore,
    pub cfg: Arc<Config>,
}

/// Why parameters were refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The request is wrong: answered 400 with the field.
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
    /// The built-in kinds (export, import, ingest).
    pub fn with_builtins() -> Self {
        let mut t = Self::default();
        t.register(Arc::new(ExportJob));
        t.register(Arc::new(crate::import::ImportJob));
        t.register(Arc::new(crate::ingest::IngestJob));
        t
    }

    /// # Panics
    /// When the kind is registered already: a programming error, found at start-up.
    pub fn register(&mut self, job_type: Arc<dyn JobType>) -> &mut Self {
        let kind = job_type.kind();
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

/// The built-in export: a dataset's rows, filtered, as one CSV or NDJSON file.
#[derive(Debug, Clone, Copy)]
pub struct ExportJob;

#[async_trait]
impl JobType for ExportJob {
    fn kind(&self) -> JobKind {
        JobKind::EXPORT
    }

    fn finalize_kind(&self) -> WorkKind {
        export::FINALIZE
    }

    async fn validate(
        &self,
        _tenant: &TenantId,
        params: &Value,
        env: &KindEnv,
    ) -> Result<Value, ParamsError> {
        let name = ExportSpec::dataset_name(params)?;
        let ds = env.catalog.get(name).await.map_err(|e| match e {
            CatalogError::Unknown(n) => {
                let known: Vec<&str> = env.catalog.names().collect();
                ParamsError::invalid(
                    "export.dataset",
                    format!("unknown dataset `{n}` (known: {})", known.join(", ")),
                )
            }
            CatalogError::Unavailable { problem, .. } => {
                ParamsError::invalid("export.dataset", problem)
            }
            CatalogError::Db(e) => ParamsError::Db(e),
        })?;
        let spec = ExportSpec::parse(params, &ds, &env.cfg.export)?;
        spec.check_values(&env.pool, &ds)
            .await
            .map_err(|e| match e {
                CheckError::Invalid(i) => ParamsError::Invalid(i),
                CheckError::Db(e) => ParamsError::Db(e),
            })?;
        serde_json::to_value(&spec).map_err(|e| ParamsError::Unavailable(e.to_string()))
    }

    async fn plan(&self, job: &Job, env: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
        let spec: ExportSpec = serde_json::from_value(JobTypes::params_of(job)?.clone())
            .map_err(|e| PlanError::Fatal(format!("invalid export parameters: {e}")))?;
        let ds = env.catalog.get(&spec.dataset).await.map_err(|e| match e {
            CatalogError::Db(e) => PlanError::Retryable(e.to_string()),
            other => PlanError::Fatal(other.to_string()),
        })?;
        export::plan::plan(&env.pool, &ds, &spec, env.cfg.export.exact_plan_max_rows)
            .await
            .map_err(|e| {
                let why = format!("planning the export failed: {e}");
                if is_permanent(&e) {
                    PlanError::Fatal(why)
                } else {
                    PlanError::Retryable(why)
                }
            })
    }
}

/// Data and definition errors (SQLSTATE classes 22 and 42) fail the same way every time.
fn is_permanent(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("42"))
}
