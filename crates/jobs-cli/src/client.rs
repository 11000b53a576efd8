//! `offload submit | watch | download | import`: a small client of the HTTP API (also used
//! by `offload schedule`, in [`crate::schedule`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the API is and who we are.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// API base URL (default: http:// + api.listen from the configuration).
    #[arg(long, global = true)]
    pub api_url: Option<String>,
    /// API key (default: auth.dev_api_key from the configuration).
    #[arg(long, global = true, env = "OFFLOAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SubmitCommand {
    /// Export a dataset to CSV or NDJSON.
    Export {
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value = "csv")]
        format: String,
        /// Comma-separated column names (default: all exportable columns).
        #[arg(long)]
        columns: Option<String>,
        /// Filter as JSON, e.g. '{"status": {"in": ["approved"]}}'.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        chunk_rows: Option<u32>,
        /// Webhook to call when the job finishes.
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base: String, key: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    async fn json(&self, resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            let field = body.pointer("/error/field").and_then(Value::as_str);
            match field {
                Some(f) => bail!("the API answered {status}: {f}: {msg}"),
                None => bail!("the API answered {status}: {msg}"),
            }
        }
        Ok(body)
    }

    /// Sends `body` (if any) as JSON to `path` (`/v1/…`); returns the answer's JSON body
    /// (`null` for an empty one), or an error carrying the API's message and field.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("reaching the API at {}", self.base))?;
        self.json(resp).await
    }

    pub async fn submit(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(&self.key)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("reaching the API at {}", self.base))?;
        self.json(resp).await
    }

    pub async fn job(&self, id: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/jobs/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("reaching the API at {}", self.base))?;
        self.json(resp).await
    }

    /// Polls the job until it is finished, drawing a progress bar; returns the last state.
    pub async fn watch(&self, id: &str, quiet: bool) -> anyhow::Result<Value> {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:>10} [{bar:40}] {pos}/{len} parts ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        loop {
            let job = self.job(id).await?;
            let status = job["status"].as_str().unwrap_or("?").to_owned();
            let p = &job["progress"];
            let finished = p["done"].as_u64().unwrap_or(0)
                + p["failed"].as_u64().unwrap_or(0)
                + p["skipped"].as_u64().unwrap_or(0);
            bar.set_length(p["total"].as_u64().unwrap_or(0));
            bar.set_position(finished);
            bar.set_message(status.clone());
            if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                bar.finish();
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sends a file to `POST /v1/uploads`, streamed from disk; returns the upload.
    pub async fn upload(&self, path: &Path) -> anyhow::Result<Value> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().await?.len();
        let chunks = futures::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let resp = self
            .http
            .post(format!("{}/v1/uploads", self.base))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .with_context(|| format!("reaching the API at {}", self.base))?;
        self.json(resp).await
    }

    /// Downloads the result through its signed link to `to`, or to `<id>.<extension>` in
    /// the current directory, the extension being what the result is (see
    /// [`result_extension`]); returns where it went and the bytes written. Nothing is
    /// created when the API refuses (a failed job answers with its error).
    pub async fn download_result(
        &self,
        id: &str,
        to: Option<&Path>,
    ) -> anyhow::Result<(PathBuf, u64)> {
        let resp = self.fetch(id, "result").await?;
        let to = match to {
            Some(to) => to.to_owned(),
            None => PathBuf::from(format!("{id}.{}", result_extension(&resp))),
        };
        let n = save(resp, &to).await?;
        Ok((to, n))
    }

    /// Downloads a job's file (`result`, or an import's `rejects`) through its signed
    /// link; returns the bytes written.
    pub async fn download_file(&self, id: &str, file: &str, to: &Path) -> anyhow::Result<u64> {
        let resp = self.fetch(id, file).await?;
        save(resp, to).await
    }

    /// `GET /v1/jobs/{id}/{file}`, following the redirect to the signed link; an error
    /// carrying the API's message unless the file is coming.
    async fn fetch(&self, id: &str, file: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}/v1/jobs/{id}/{file}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("reaching the API at {}", self.base))?;
        if !resp.status().is_success() {
            self.json(resp).await?;
            bail!("the download failed");
        }
        Ok(resp)
    }
}

/// Streams a download's body into a new file at `to`; returns the bytes written.
async fn save(resp: reqwest::Response, to: &Path) -> anyhow::Result<u64> {
    let mut file = tokio::fs::File::create(to)
        .await
        .with_context(|| format!("creating {}", to.display()))?;
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the download")?;
        n += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(n)
}

/// The extension of a downloaded result, from what the answer says it is: the file name
/// the API gives it (`Content-Disposition`: `csv` or `ndjson` for an export, `json` for an
/// ingest's manifest), else the name at the end of the link (a blob store's own signed
/// URL ends with the blob's), else its content type; `bin` when nothing tells.
fn result_extension(resp: &reqwest::Response) -> String {
    fn plausible(ext: &str) -> Option<String> {
        (!ext.is_empty() && ext.len() <= 10 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| ext.to_ascii_lowercase())
    }
    let header = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let from_disposition = header(reqwest::header::CONTENT_DISPOSITION).and_then(|d| {
        let name = d
            .split(';')
            .find_map(|p| p.trim().strip_prefix("filename="))?;
        let (_, ext) = name.trim_matches('"').rsplit_once('.')?;
        plausible(ext)
    });
    let from_link = || {
        let last = resp.url().path_segments()?.next_back()?;
        let (_, ext) = last.rsplit_once('.')?;
        plausible(ext)
    };
    let from_type = || {
        let ct = header(reqwest::header::CONTENT_TYPE)?;
        let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
        Some(
            match essence.as_str() {
                "text/csv" => "csv",
                "application/x-ndjson" => "ndjson",
                "application/json" => "json",
                _ => return None,
            }
            .to_owned(),
        )
    };
    from_disposition
        .or_else(from_link)
        .or_else(from_type)
        .unwrap_or_else(|| "bin".to_owned())
}

pub fn export_body(cmd: &SubmitCommand) -> anyhow::Result<(Value, Option<String>)> {
    let SubmitCommand::Export {
        dataset,
        format,
        columns,
        filter,
        chunk_rows,
        webhook,
        idempotency_key,
    } = cmd;
    let mut export = json!({ "dataset": dataset, "format": format });
    if let Some(c) = columns {
        export["columns"] = json!(c.split(',').map(str::trim).collect::<Vec<_>>());
    }
    if let Some(f) = filter {
        export["filter"] = serde_json::from_str(f).context("--filter is not valid JSON")?;
    }
    if let Some(n) = chunk_rows {
        export["chunk_rows"] = json!(n);
    }
    let mut body = json!({ "kind": "export", "export": export });
    if let Some(w) = webhook {
        body["notify"] = json!({ "webhook_url": w });
    }
    Ok((body, idempotency_key.clone()))
}
