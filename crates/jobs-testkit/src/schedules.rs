//! Schedules in tests: a request, creation through the API, changes, and the enqueuer's
//! firing made due at a chosen instant.

use chrono::{DateTime, Utc};
use jobs_enqueuer::EnqueuerContext;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Stack;

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn export_job() -> Value {
    json!({"kind": "export", "export": {"dataset": "things", "chunk_rows": 500}})
}

pub fn schedule(cron: &str) -> Value {
    json!({"name": "approved expenses", "cron": cron, "timezone": "Europe/Paris", "job": export_job()})
}

pub async fn create(stack: &Stack, body: &Value) -> Value {
    let (status, doc) = stack.post("/v1/schedules", body).await;
    assert_eq!(status, 201, "{doc}");
    doc
}

pub fn enqueuer(stack: &Stack) -> EnqueuerContext {
    EnqueuerContext::from_runtime(stack.runtime(), jobs_builtins::job_types())
}

/// Makes a schedule due (as if its tick had come while nothing ran).
pub async fn make_due(stack: &Stack, id: &str, at: &str) {
    jobs_core::sqlx::query(
        "UPDATE offload.schedules SET next_run_at = $2::timestamptz WHERE id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap())
    .bind(at)
    .execute(&stack.db.pool)
    .await
    .unwrap();
}

pub async fn count(stack: &Stack, sql: &str) -> i64 {
    jobs_core::sqlx::query_scalar(sql)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

pub async fn delete(stack: &Stack, path: &str, key: &str) -> u16 {
    stack.request(Method::DELETE, path, key, None).await.0
}

pub async fn patch(stack: &Stack, id: &str, body: &Value, key: &str) -> (u16, Value) {
    let path = format!("/v1/schedules/{id}");
    stack.request(Method::PATCH, &path, key, Some(body)).await
}
