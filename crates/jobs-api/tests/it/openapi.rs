//! The OpenAPI document: current in the repository, complete, and open to custom kinds.

use std::sync::Arc;

use async_trait::async_trait;
use jobs_core::id::TenantId;
use jobs_core::kind::{JobKind, WorkKind};
use jobs_core::store::{Job, PlannedItem};
use jobs_sdk::jobtype::{JobType, JobTypes, KindEnv, ParamsError, PlanError};
use serde_json::{Value, json};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

/// `docs/openapi.json` is what the built-in kinds' API serves. With
/// `OFFLOAD_WRITE_OPENAPI=1` the test writes it instead of comparing.
#[test]
fn the_committed_document_is_current() {
    let now = jobs_api::openapi::pretty(&jobs_builtins::job_types());
    if std::env::var_os("OFFLOAD_WRITE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &now).expect("writing docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == now,
        "docs/openapi.json is not what the API serves: regenerate it with \
         `cargo run -p jobs-cli -- openapi > docs/openapi.json` \
         (or OFFLOAD_WRITE_OPENAPI=1 cargo test -p jobs-api --test it openapi)"
    );
}

#[test]
fn every_route_is_described_with_its_errors_and_its_key() {
    let doc = jobs_api::openapi::document(&jobs_builtins::job_types());
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut described: Vec<String> = Vec::new();
    let mut operation_ids: Vec<&str> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            described.push(format!("{} {path}", method.to_uppercase()));
            operation_ids.push(op["operationId"].as_str().expect("an operationId"));
            let responses = op["responses"].as_object().expect("responses");
            let secured = op.get("security").is_some();
            assert_eq!(
                secured,
                path.starts_with("/v1/") && !path.starts_with("/v1/downloads/"),
                "{method} {path}: the API key is required exactly on the tenant's routes"
            );
            if secured {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} does not describe its 401"
                );
            }
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}: OpenAPI 3.1 requires a description"
                );
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        if path.starts_with("/health/") {
                            "#/components/schemas/Health"
                        } else {
                            "#/components/schemas/ErrorBody"
                        },
                        "{method} {path} {status}: errors are in the one error format"
                    );
                }
            }
        }
    }
    let n = operation_ids.len();
    operation_ids.sort_unstable();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), n, "operationIds are unique");
    described.sort();
    let expected = [
        "DELETE /v1/schedules/{id}",
        "DELETE /v1/uploads/{id}",
        "GET /health/live",
        "GET /health/ready",
        "GET /v1/downloads/{id}",
        "GET /v1/jobs",
        "GET /v1/jobs/{id}",
        "GET /v1/jobs/{id}/events",
        "GET /v1/jobs/{id}/rejects",
        "GET /v1/jobs/{id}/result",
        "GET /v1/schedules",
        "GET /v1/schedules/{id}",
        "GET /v1/uploads",
        "GET /v1/uploads/{id}",
        "PATCH /v1/schedules/{id}",
        "POST /v1/jobs",
        "POST /v1/jobs/{id}/cancel",
        "POST /v1/jobs/{id}/retry-failed",
        "POST /v1/schedules",
        "POST /v1/schedules/{id}/pause",
        "POST /v1/schedules/{id}/resume",
        "POST /v1/uploads",
        "POST /v1/uploads/direct",
        "POST /v1/uploads/{id}/complete",
    ];
    assert_eq!(described, expected);
}

/// A kind a deployment adds, with a schema of its own.
#[derive(Debug)]
struct Thumbnails;

#[async_trait]
impl JobType for Thumbnails {
    fn kind(&self) -> JobKind {
        JobKind::from_static("acme.thumbnails")
    }

    fn finalize_kind(&self) -> WorkKind {
        WorkKind::from_static("acme.thumbnails.finalize")
    }

    fn request_schema(&self) -> Value {
        json!({"type": "object", "required": ["bucket"], "properties": {"bucket": {"type": "string"}}})
    }

    async fn validate(&self, _: &TenantId, p: &Value, _: &KindEnv) -> Result<Value, ParamsError> {
        Ok(p.clone())
    }

    async fn plan(&self, _: &Job, _: &KindEnv) -> Result<Vec<PlannedItem>, PlanError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_custom_kind_contributes_its_request_schema() {
    let mut types = jobs_builtins::job_types();
    types.register(Arc::new(Thumbnails));
    let doc = jobs_api::openapi::document(&types);
    let variants = doc["components"]["schemas"]["JobRequest"]["oneOf"]
        .as_array()
        .expect("one variant per kind");
    let kinds: Vec<&str> = variants
        .iter()
        .map(|v| v["properties"]["kind"]["const"].as_str().expect("a kind"))
        .collect();
    assert_eq!(kinds, ["acme.thumbnails", "export", "import", "ingest"]);
    let ours = &variants[0];
    assert_eq!(ours["required"], json!(["kind", "acme.thumbnails"]));
    assert_eq!(
        ours["properties"]["acme.thumbnails"]["required"],
        json!(["bucket"])
    );
    // Without it, the document does not mention it.
    let builtin = jobs_api::openapi::document(&JobTypes::default());
    assert_eq!(
        builtin["components"]["schemas"]["JobRequest"]["oneOf"],
        json!([])
    );
}
