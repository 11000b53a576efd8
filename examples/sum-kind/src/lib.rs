//! An example of a team's own job kind, `example.sum`: the sum of the squares of the whole
//! numbers in `[from, to]`, split into ranges that workers sum in parallel (fan-out) and a
//! finalizer adds up (fan-in). Small on purpose; everything a real kind needs is here:
//!
//! 1. a [`JobType`] — the stable kind string, validation of the request's parameters (run by
//!    the API, errors name the field) and the planner (run by the enqueuer: deterministic,
//!    items carry ranges, not data);
//! 2. a [`Processor`] per work item kind — idempotent, because an item may run twice;
//! 3. a [`Finalizer`] — builds the job's result from the items' recorded outputs;
//! 4. registration: [`kind`] bundles the three as a [`Kind`], exactly as the built-in kinds
//!    do (`jobs_export::kind()`), and [`kinds`] adds it to them; `main.rs` starts every
//!    service with those (`Services::start_with`). A deployment running the services as
//!    separate processes registers the same [`Kinds`] in each of them.
//!
//! The kind depends on the SDK (`jobs-sdk`) and `jobs-core` only.
//!
//! ```text
//! POST /v1/jobs {"kind": "example.sum", "example.sum": {"from": 1, "to": 1000000}}
//! → result {"sum": "333333833333500000", "ranges": 10}
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use jobs_core::envelope::WorkItem;
use jobs_core::process::ProcessError;
use jobs_core::store::{ItemRecord, Job, PlannedItem};
use jobs_core::{JobKind, TenantId, WorkKind};
use jobs_sdk::jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};
use jobs_sdk::{Finalizer, Kind, Kinds, Processor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The job kind: also the request field holding the parameters.
pub const KIND: JobKind = JobKind::from_static("example.sum");
/// One range of numbers to sum.
pub const RANGE: WorkKind = WorkKind::from_static("example.sum.range");
/// The fan-in.
pub const FINALIZE: WorkKind = WorkKind::from_static("example.sum.finalize");

/// Most work items one job may have.
pub const MAX_RANGES: u64 = 10_000;

/// The parameters, as stored with the job after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumParams {
    pub from: u64,
    pub to: u64,
    /// Numbers per work item.
    pub chunk: u64,
}

/// One work item's range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub from: u64,
    pub to: u64,
}

/// `example.sum`: its job type, processor and finalizer.
pub fn kind() -> Kind {
    Kind {
        job_type: Arc::new(SumJob),
        processors: vec![Arc::new(SumRange)],
        finalizer: Arc::new(SumFinalizer),
    }
}

/// The built-in kinds plus `example.sum`.
pub fn kinds() -> Kinds {
    jobs_builtins::kinds().with(kind())
}

#[derive(Debug)]
pub struct SumJob;

fn number(params: &Value, key: &str) -> Result<Option<u64>, ParamsError> {
    match params.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ParamsError::invalid(format!("example.sum.{key}"), "must be a whole number ≥ 0")
        }),
    }
}

#[async_trait]
impl JobType for SumJob {
    fn kind(&self) -> JobKind {
        KIND
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    /// Shown in the API's OpenAPI document under the `example.sum` request.
    fn request_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": false,
            "properties": {
                "from": {"type": "integer", "minimum": 0},
                "to": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                "chunk": {"type": "integer", "minimum": 1, "default": 100_000}
            }
        })
    }

    async fn validate(
        &self,
        _tenant: &TenantId,
        params: &Value,
        _env: &KindEnv,
    ) -> Result<Value, ParamsError> {
        let obj = params
            .as_object()
            .ok_or_else(|| ParamsError::invalid("example.sum", "must be an object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["from", "to", "chunk"].contains(&k.as_str()))
        {
            return Err(ParamsError::invalid(
                format!("example.sum.{k}"),
                "is not a known field",
            ));
        }
        let required = |key| {
            number(params, key)?
                .ok_or_else(|| ParamsError::invalid(format!("example.sum.{key}"), "is required"))
        };
        let (from, to) = (required("from")?, required("to")?);
        let chunk = number(params, "chunk")?.unwrap_or(100_000);
        if to < from {
            return Err(ParamsError::invalid(
                "example.sum.to",
                "must be at least `from`",
            ));
        }
        if to > u64::from(u32::MAX) {
            return Err(ParamsError::invalid(
                "example.sum.to",
                "must be at most 4294967295",
            ));
        }
        if chunk == 0 {
            return Err(ParamsError::invalid(
                "example.sum.chunk",
                "must be at least 1",
            ));
        }
        if (to - from) / chunk + 1 > MAX_RANGES {
            return Err(ParamsError::invalid(
                "example.sum.chunk",
                format!("makes more than {MAX_RANGES} work items; choose a larger chunk"),
            ));
        }
        Ok(json!(SumParams { from, to, chunk }))
    }

    async fn plan(&self, job: &Job, _env: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
        let p: SumParams = serde_json::from_value(JobTypes::params_of(job)?.clone())
            .map_err(|e| PlanError::Fatal(format!("invalid example.sum parameters: {e}")))?;
        let mut items = Vec::new();
        let mut start = p.from;
        loop {
            let end = start.saturating_add(p.chunk - 1).min(p.to);
            items.push(PlannedItem {
                seq: items.len() as u32,
                kind: RANGE,
                payload: json!(Range {
                    from: start,
                    to: end
                }),
            });
            if end == p.to {
                return Ok(items);
            }
            start = end + 1;
        }
    }
}

/// Sums the squares of one range. Pure, so running it twice is harmless.
#[derive(Debug)]
pub struct SumRange;

#[async_trait]
impl Processor for SumRange {
    fn kind(&self) -> WorkKind {
        RANGE
    }

    async fn process(
        &self,
        _env: &KindEnv,
        _job: &Job,
        item: &WorkItem,
    ) -> Result<Value, ProcessError> {
        let r: Range = serde_json::from_value(item.payload.clone())
            .map_err(|e| ProcessError::fatal(format!("bad range: {e}")))?;
        let sum: u128 = (r.from..=r.to).map(|i| u128::from(i) * u128::from(i)).sum();
        // u128 does not fit a JSON number: carried as a decimal string.
        Ok(json!({ "sum": sum.to_string() }))
    }
}

/// Adds the ranges' sums.
#[derive(Debug)]
pub struct SumFinalizer;

#[async_trait]
impl Finalizer for SumFinalizer {
    fn job_kind(&self) -> JobKind {
        KIND
    }

    fn finalize_kind(&self) -> WorkKind {
        FINALIZE
    }

    async fn finalize(
        &self,
        _env: &KindEnv,
        _job: &Job,
        items: &[ItemRecord],
    ) -> Result<Value, ProcessError> {
        let mut total: u128 = 0;
        for i in items {
            let part = i
                .output
                .as_ref()
                .and_then(|o| o["sum"].as_str())
                .and_then(|s| s.parse::<u128>().ok())
                .ok_or_else(|| {
                    ProcessError::fatal(format!("item {} has no sum output", i.item.seq))
                })?;
            total = total
                .checked_add(part)
                .ok_or_else(|| ProcessError::fatal("the sum overflows 128 bits"))?;
        }
        Ok(json!({ "sum": total.to_string(), "ranges": items.len() }))
    }
}
