//! The export's job type: the request checked against the dataset, and the plan.

use async_trait::async_trait;
use jobs_core::dataset::CatalogError;
use jobs_core::id::TenantId;
use jobs_core::kind::{JobKind, WorkKind};
use jobs_core::store::{Job, PlannedItem};
use jobs_sdk::jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};
use serde_json::Value;

use crate::{CheckError, ExportSpec};

/// The built-in export: a dataset's rows, filtered, as one CSV or NDJSON file.
#[derive(Debug, Clone, Copy)]
pub struct ExportJob;

#[async_trait]
impl JobType for ExportJob {
    fn kind(&self) -> JobKind {
        crate::KIND
    }

    fn finalize_kind(&self) -> WorkKind {
        crate::FINALIZE
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
        crate::plan::plan(&env.pool, &ds, &spec, env.cfg.export.exact_plan_max_rows)
            .await
            .map_err(|e| {
                let why = format!("planning the export failed: {e}");
                if jobs_core::db::fails_the_same_way_again(&e) {
                    PlanError::Fatal(why)
                } else {
                    PlanError::Retryable(why)
                }
            })
    }
}
