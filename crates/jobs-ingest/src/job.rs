//! The ingest job type: validation in the API, planning in the enqueuer.

use async_trait::async_trait;
use serde_json::Value;

use super::{FINALIZE, IngestSpec, plan};
use jobs_core::id::TenantId;
use jobs_core::kind::{JobKind, WorkKind};
use jobs_core::store::{Job, PlannedItem};
use jobs_sdk::jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};

/// `ingest`: the records of a configured source API, as NDJSON pages and a manifest.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestJob;

/// The stored parameters of an ingest job.
pub fn spec_of(job: &Job) -> Result<IngestSpec, String> {
    let params = JobTypes::params_of(job).map_err(|e| e.to_string())?;
    serde_json::from_value(params.clone())
        .map_err(|e| format!("the job's ingest parameters are invalid: {e}"))
}

#[async_trait]
impl JobType for IngestJob {
    fn kind(&self) -> JobKind {
        crate::KIND
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    fn request_schema(&self) -> Value {
        crate::spec::request_schema()
    }

    async fn validate(
        &self,
        _tenant: &TenantId,
        params: &Value,
        env: &KindEnv,
    ) -> Result<Value, ParamsError> {
        let spec = IngestSpec::parse(params, &env.cfg.sources, chrono::Utc::now())?;
        serde_json::to_value(&spec).map_err(|e| ParamsError::Unavailable(e.to_string()))
    }

    async fn plan(&self, job: &Job, env: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
        let spec = spec_of(job).map_err(PlanError::Fatal)?;
        let cfg = env.cfg.sources.get(&spec.source).ok_or_else(|| {
            PlanError::Fatal(format!("source `{}` is no longer configured", spec.source))
        })?;
        plan::plan(&spec, cfg, &env.pool).await
    }
}
