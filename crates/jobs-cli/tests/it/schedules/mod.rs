//! Schedules: the API's contract ([`api`]); changes (`PATCH`, [`patch`]); pause / resume /
//! delete, exactly one job per tick with several enqueuers firing at once, the missed-tick
//! rule, and scheduled exports that run ([`firing`]); the `offload schedule` commands
//! against a running stack ([`cli`]).

mod api;
mod cli;
mod firing;
mod patch;

use chrono::{DateTime, Utc};
use jobs_enqueuer::EnqueuerContext;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::Stack;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn export_job() -> Value {
    json!({"kind": "export", "export": {"dataset": "things", "chunk_rows": 500}})
}

fn schedule(cron: &str) -> Value {
    json!({"name": "approved expenses", "cron": cron, "timezone": "Europe/Paris", "job": export_job()})
}

async fn create(stack: &Stack, body: &Value) -> Value {
    let (status, doc) = stack.post("/v1/schedules", body).await;
    assert_eq!(status, 201, "{doc}");
    doc
}

fn enqueuer(stack: &Stack) -> EnqueuerContext {
    EnqueuerContext::from_runtime(stack.runtime(), jobs_builtins::job_types())
}

/// Makes a schedule due (as if its tick had come while nothing ran).
async fn make_due(stack: &Stack, id: &str, at: &str) {
    jobs_core::sqlx::query(
        "UPDATE offload.schedules SET next_run_at = $2::timestamptz WHERE id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap())
    .bind(at)
    .execute(&stack.db.pool)
    .await
    .unwrap();
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    jobs_core::sqlx::query_scalar(sql)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

async fn delete(stack: &Stack, path: &str, key: &str) -> u16 {
    stack
        .http
        .delete(format!("{}{path}", stack.api))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn patch(stack: &Stack, id: &str, body: &Value, key: &str) -> (u16, Value) {
    let resp = stack
        .http
        .patch(format!("{}/v1/schedules/{id}", stack.api))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}
