//! The OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! Generated, not written: the paths, parameters and responses come from the handlers'
//! `#[utoipa::path]` attributes and the bodies from the types of [`crate::contract`],
//! collected by the same `OpenApiRouter` that builds the axum router — a route cannot be
//! served without being described. Two things are added to what utoipa makes:
//! - the job request (`JobRequest`) has one variant per job kind the deployment runs, each
//!   with its kind's own schema ([`jobs_sdk::JobType::request_schema`]), so a deployment
//!   that adds a kind documents it;
//! - the bearer API key, on every `/v1` route but the signed downloads.
//!
//! `docs/openapi.json` is this document for the built-in kinds; a test fails when it is
//! out of date, and `offload openapi > docs/openapi.json` writes it.

use jobs_sdk::jobtype::JobTypes;
use serde_json::{Map, Value, json};

use crate::AppState;

/// The name of the API key's security scheme.
const API_KEY: &str = "api_key";

/// The document for a deployment running `job_types`.
pub fn document(job_types: &JobTypes) -> Value {
    let (_, api) = crate::routes().split_for_parts();
    finish(
        serde_json::to_value(&api).unwrap_or_else(|_| json!({})),
        job_types,
    )
}

/// The document as `offload openapi` prints it and `docs/openapi.json` holds it.
pub fn pretty(job_types: &JobTypes) -> String {
    let mut text = serde_json::to_string_pretty(&document(job_types)).unwrap_or_default();
    text.push('\n');
    text
}

pub(crate) fn finish(mut doc: Value, job_types: &JobTypes) -> Value {
    doc["info"] = json!({
        "title": "Offload API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Heavy data work off web applications: submit an export, import or ingest, \
            follow it, and download its result from a short-lived link. Every error is \
            {\"error\": {\"code\", \"message\", \"field\"?}}.",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    });
    let components = doc["components"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"][API_KEY] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of the tenant: `Authorization: Bearer <key>`.",
    });
    components["schemas"]["JobRequest"] = job_request(job_types);
    doc["components"] = components;
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let secured = path.starts_with("/v1/") && !path.starts_with("/v1/downloads/");
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut().filter(|op| op.is_object()) {
                if secured {
                    op["security"] = json!([{ API_KEY: [] }]);
                }
                complete_operation(op);
            }
        }
    }
    doc
}

/// What utoipa leaves out and OpenAPI 3.1 requires or means otherwise: every response has
/// a `description` (the status's reason phrase where the handler gave none), and a body of
/// raw bytes is a binary string, not an array of integers.
fn complete_operation(op: &mut Value) {
    if let Some(body) = op.pointer_mut("/requestBody/content") {
        binary_bodies(body);
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if response.get("description").is_none_or(|d| d == "") {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Response");
            response["description"] = json!(reason);
        }
        if let Some(content) = response.get_mut("content") {
            binary_bodies(content);
        }
    }
}

fn binary_bodies(content: &mut Value) {
    if let Some(octets) = content.get_mut("application/octet-stream") {
        octets["schema"] = json!({"type": "string", "format": "binary"});
    }
}

/// `{"kind": K, K: <K's schema>, "notify"?}` for every kind K.
fn job_request(job_types: &JobTypes) -> Value {
    let variants: Vec<Value> = job_types
        .kinds()
        .filter_map(|k| job_types.get(k).map(|t| (k.as_str(), t)))
        .map(|(kind, t)| {
            let mut properties = Map::new();
            properties.insert("kind".into(), json!({ "const": kind }));
            properties.insert(kind.into(), t.request_schema());
            properties.insert(
                "notify".into(),
                json!({ "oneOf": [{"$ref": "#/components/schemas/Notify"}, {"type": "null"}] }),
            );
            json!({
                "title": kind,
                "type": "object",
                "required": ["kind", kind],
                "additionalProperties": false,
                "properties": properties,
            })
        })
        .collect();
    json!({
        "description": "A job: `kind`, the kind's parameters under the kind's own name, and \
            optionally `notify`. One variant per job kind this deployment runs.",
        "oneOf": variants,
    })
}

/// `GET /openapi.json`: the document, made once at start-up.
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        // A reference-counted copy, not the document's bytes again per request.
        state.openapi.clone(),
    )
}
