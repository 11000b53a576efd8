//! A running stack for one test, and a dataset made to break CSV writers.

use std::time::Duration;

use futures::StreamExt;
use jobs_cli::{Roles, Services};
use jobs_core::testing::{TestDb, eventually};
use jobs_queue::runtime::Runtime;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "test-key";

/// The test configuration: small chunks, fast polling, a retry schedule of seconds, a
/// `things` dataset on the tricky table.
pub fn toml(blob_root: &std::path::Path) -> String {
    format!(
        r#"
[auth]
dev_api_key = "{KEY}"
[download]
signing_key = "0123456789abcdef0123456789abcdef"
[export]
min_chunk_rows = 10
default_chunk_rows = 100
[worker]
concurrency = 4
retry_base_ms = 50
[queue]
poll_interval_ms = 50
[notifier]
retry_schedule_secs = [1, 1]
allow_private_networks = true
[blob]
root = "{}"
[datasets.things]
table = "public.things"
key = "id"
columns = ["id", "label", "note", "amount", "happened_at", "flag"]
filterable = ["label", "amount", "happened_at", "flag"]
"#,
        blob_root.display()
    )
}

/// The services a test asked for, on a database of its own.
#[derive(Debug)]
pub struct Stack {
    pub db: TestDb,
    pub services: Option<Services>,
    pub api: String,
    pub http: reqwest::Client,
    pub blob_root: std::path::PathBuf,
}

impl Stack {
    pub async fn start(roles: Roles, extra_toml: &str) -> Self {
        let db = TestDb::new().await;
        tricky_table(&db.pool, 3000).await;
        let blob_root = std::env::temp_dir().join(format!("offload-it-{}", uuid::Uuid::new_v4()));
        let cfg = std::sync::Arc::new(db.config(&[&toml(&blob_root), extra_toml]));
        let runtime = Runtime::start(cfg).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let services = Services::start_roles(runtime, listener, roles)
            .await
            .unwrap();
        let api = services.api_url.clone();
        Self {
            db,
            services: Some(services),
            api,
            http: reqwest::Client::new(),
            blob_root,
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.services.as_ref().unwrap().runtime
    }

    /// `method path` as `key`'s tenant, with `body` as JSON when given: the status and the
    /// JSON answer (`null` when there is none).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, KEY, Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, KEY, None).await
    }

    pub async fn submit(&self, export: Value) -> String {
        let (status, job) = self
            .post("/v1/jobs", &json!({"kind": "export", "export": export}))
            .await;
        assert_eq!(status, 202, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Reads the job until `pred` holds (or 60 s pass).
    pub async fn wait_for(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/v1/jobs/{id}");
        eventually(&format!("job {id}"), Duration::from_secs(60), || async {
            let (status, job) = self.get(&path).await;
            assert_eq!(status, 200, "{job}");
            pred(&job).then_some(job)
        })
        .await
    }

    /// A worker of its own (the built-in kinds) on this stack's runtime, beside whatever
    /// roles the stack runs; it stops when the token is cancelled.
    pub fn start_worker(&self) -> CancellationToken {
        let rt = self.runtime();
        let ctx = std::sync::Arc::new(jobs_worker::WorkerContext {
            env: rt.kind_env(),
            store: rt.store.clone(),
            transport: rt.transport.clone(),
            queues: rt.queues.clone(),
            registry: jobs_builtins::registry(),
            settings: jobs_worker::WorkerSettings::from_config(&rt.cfg),
        });
        let stop = CancellationToken::new();
        tokio::spawn(jobs_worker::run_until_stopped(ctx, stop.clone()));
        stop
    }

    pub async fn finished(&self, id: &str) -> Value {
        self.wait_for(id, |j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }

    /// The result file through the API's signed link (following the redirect).
    pub async fn download(&self, id: &str) -> Vec<u8> {
        let resp = self
            .http
            .get(format!("{}/v1/jobs/{id}/result", self.api))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "download failed");
        resp.bytes().await.unwrap().to_vec()
    }

    /// What `COPY (query) TO STDOUT WITH (options)` prints, straight from Postgres.
    pub async fn copy_out(&self, query: &str, options: &str) -> Vec<u8> {
        let mut conn = self.db.pool.acquire().await.unwrap();
        let mut stream = conn
            .copy_out_raw(&format!("COPY ({query}) TO STDOUT WITH ({options})"))
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.services.take() {
            s.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.blob_root);
    }
}

/// Uploads `bytes` as `key`'s tenant; returns the answer.
pub async fn upload_as(stack: &Stack, key: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = stack
        .http
        .post(format!("{}/v1/uploads", stack.api))
        .bearer_auth(key)
        .body(bytes)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Uploads `bytes` as the test tenant; returns the upload's id.
pub async fn upload(stack: &Stack, bytes: Vec<u8>) -> String {
    let (status, body) = upload_as(stack, KEY, bytes).await;
    assert_eq!(status, 201, "{body}");
    body["upload_id"].as_str().unwrap().to_owned()
}

/// The finished export `job_id`'s file is exactly what `COPY (query) TO STDOUT WITH
/// (options)` prints: same bytes, same order. On a difference, names the first line that
/// differs.
pub async fn assert_export_equals_copy(stack: &Stack, job_id: &str, query: &str, options: &str) {
    let ours = stack.download(job_id).await;
    let theirs = stack.copy_out(query, options).await;
    if ours == theirs {
        return;
    }
    let (a, b) = (
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs),
    );
    let line = a
        .split_inclusive('\n')
        .zip(b.split_inclusive('\n'))
        .position(|(x, y)| x != y)
        .map_or_else(
            || "one file is a prefix of the other".to_owned(),
            |i| {
                format!(
                    "line {}: export {:?}, COPY {:?}",
                    i + 1,
                    a.split_inclusive('\n').nth(i).unwrap_or_default(),
                    b.split_inclusive('\n').nth(i).unwrap_or_default()
                )
            },
        );
    panic!(
        "export {job_id} ({} bytes) differs from COPY ({} bytes): {line}",
        ours.len(),
        theirs.len()
    );
}

/// `public.things`: sparse, skewed keys, and values with quotes, commas, newlines, carriage
/// returns, unicode, empty strings, NULLs, numerics, timestamps and booleans.
pub async fn tricky_table(pool: &jobs_core::sqlx::PgPool, rows: i64) {
    jobs_core::sqlx::query(
        "CREATE TABLE public.things (
             id bigint PRIMARY KEY, label text, note text, amount numeric(14,4),
             happened_at timestamptz, flag boolean)",
    )
    .execute(pool)
    .await
    .unwrap();
    jobs_core::sqlx::query(
        r#"INSERT INTO public.things
           SELECT CASE WHEN g <= $1 / 2 THEN g ELSE g * g * 7 END,
                  (ARRAY['alpha','beta','gamma','δέλτα'])[1 + g % 4],
                  CASE g % 9
                      WHEN 0 THEN 'plain'
                      WHEN 1 THEN 'comma, inside'
                      WHEN 2 THEN 'quote "inside" here'
                      WHEN 3 THEN E'new\nline'
                      WHEN 4 THEN E'carriage\r\nreturn'
                      WHEN 5 THEN ''
                      WHEN 6 THEN NULL
                      WHEN 7 THEN 'ünïcödé 東京 🚀'
                      ELSE E'\\.' END,
                  CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 1.2345)::numeric(14,4) - 1000 END,
                  CASE WHEN g % 13 = 0 THEN NULL
                       ELSE timestamptz '2026-03-01 12:00:00+00' + g * interval '17 minutes 3.25 seconds' END,
                  CASE WHEN g % 5 = 0 THEN NULL ELSE g % 2 = 0 END
           FROM generate_series(1, $1) AS g"#,
    )
    .bind(rows)
    .execute(pool)
    .await
    .unwrap();
    jobs_core::sqlx::query("VACUUM ANALYZE public.things")
        .execute(pool)
        .await
        .unwrap();
}

pub const THINGS_COLUMNS: &str = "id, label, note, amount, happened_at, flag";
