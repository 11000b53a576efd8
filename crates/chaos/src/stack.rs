//! The services as separate processes (the API, the enqueuer, the notifier and three
//! workers), started from the built binaries with one configuration file, killed with
//! SIGKILL and started again; and the HTTP calls a client makes to the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

pub const KEY: &str = "chaos-key";
pub const WORKERS: [&str; 3] = ["worker-1", "worker-2", "worker-3"];
pub const SERVICES: [&str; 6] = [
    "api", "enqueuer", "notifier", "worker-1", "worker-2", "worker-3",
];

#[derive(Debug)]
pub struct Stack {
    /// Where the configuration, the logs and the blob store live.
    pub dir: PathBuf,
    /// Where the service binaries are.
    bin: PathBuf,
    config: PathBuf,
    pub api: String,
    pub http: reqwest::Client,
    running: BTreeMap<&'static str, Child>,
    /// Processes killed, all told.
    pub kills: u32,
}

impl Stack {
    pub fn new(dir: &Path, bin: &Path, config_toml: &str, api: String) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let config = dir.join("chaos.toml");
        std::fs::write(&config, config_toml)?;
        Ok(Self {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            config,
            api,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            running: BTreeMap::new(),
            kills: 0,
        })
    }

    fn binary(&self, service: &str) -> PathBuf {
        let name = match service {
            "api" => "jobs-api",
            "enqueuer" => "jobs-enqueuer",
            "notifier" => "jobs-notifier",
            _ => "jobs-worker",
        };
        self.bin.join(name)
    }

    /// Starts `service` (one of [`SERVICES`]); its output is appended to `logs/<name>.log`.
    pub fn start(&mut self, service: &'static str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs").join(format!("{service}.log")))?;
        let child = Command::new(self.binary(service))
            .arg("--config")
            .arg(&self.config)
            .env("OFFLOAD__TELEMETRY__SERVICE_NAME", service)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary(service).display()))?;
        self.running.insert(service, child);
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for s in SERVICES {
            self.start(s)?;
        }
        Ok(())
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self, service: &'static str) -> anyhow::Result<()> {
        if let Some(mut child) = self.running.remove(service) {
            child.kill().await?;
            self.kills += 1;
        }
        Ok(())
    }

    /// SIGTERM to every process, then waits for each (SIGKILL after `grace`).
    pub async fn stop_all(&mut self, grace: Duration) {
        for (_, child) in self.running.iter_mut() {
            if let Some(pid) = child.id() {
                // SIGTERM through `kill`: tokio can only send SIGKILL.
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for (_, mut child) in std::mem::take(&mut self.running) {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// A service that exited by itself (not killed here), with its status.
    pub fn exited(&mut self) -> Option<(&'static str, String)> {
        for (name, child) in self.running.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((name, status.to_string()));
            }
        }
        None
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .http
                .get(format!("{}/health/ready", self.api))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the API did not become ready in {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await?;
        Ok((
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        ))
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        Ok((
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        ))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(KEY)
            .send()
            .await?;
        Ok((
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        ))
    }

    /// Submits a job; its id.
    pub async fn submit(&self, job: &Value) -> anyhow::Result<String> {
        let (status, body) = self.post("/v1/jobs", job).await?;
        if status != 202 {
            bail!("submitting {job} answered {status}: {body}");
        }
        Ok(body["id"].as_str().context("no id")?.to_owned())
    }

    /// The job's document, or `None` while the API cannot answer (it may be restarting).
    pub async fn job(&self, id: &str) -> Option<Value> {
        match self.get(&format!("/v1/jobs/{id}")).await {
            Ok((200, job)) => Some(job),
            _ => None,
        }
    }

    /// The result file, through its signed link.
    pub async fn download(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .http
            .get(format!("{}/v1/jobs/{id}/result", self.api))
            .bearer_auth(KEY)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("downloading job {id}'s result answered {}", resp.status());
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// Uploads a file; its upload id.
    pub async fn upload(&self, bytes: Vec<u8>) -> anyhow::Result<String> {
        let (status, body) = self.post_raw("/v1/uploads", "text/csv", bytes).await?;
        if status != 201 {
            bail!("uploading answered {status}: {body}");
        }
        Ok(body["upload_id"]
            .as_str()
            .context("no upload_id")?
            .to_owned())
    }

    /// The last lines of a service's log, for a failure report.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{service}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

pub fn is_finished(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}
