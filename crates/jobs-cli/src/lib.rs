//! The `offload` command line: all services in one process (`up`), the demo, migrations,
//! a client for the API (`submit`, `watch`, `download`, `import`, `schedule`), tenants, and
//! queue inspection.

mod client;
pub mod demo;
mod output;
mod queue;
pub mod schedule;
mod services;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jobs_core::{Config, TenantId};
use jobs_queue::runtime::Runtime;
use secrecy::ExposeSecret;

pub use client::Client;
pub use jobs_sdk::Kinds;
pub use output::is_closed_pipe;
pub use services::{Roles, Services};

use crate::output::{note, say};

#[derive(Debug, Parser)]
#[command(
    name = "offload",
    version,
    about = "Offload: heavy data work, off your web app"
)]
pub struct Cli {
    /// TOML configuration file (defaults < this file < OFFLOAD__* environment variables).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub api: client::ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `offload up` is a server: it logs like one.
    pub fn runs_services_in_foreground(&self) -> bool {
        matches!(self.command, Command::Up)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run API, enqueuer, worker and notifier in this process until Ctrl-C.
    Up,
    /// Export a demo dataset through the whole pipeline and report how it went.
    Demo {
        /// Rows in the demo dataset (created or re-created to this size).
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Create the database if it is missing and apply pending migrations.
    Migrate,
    /// Submit a job to the API.
    #[command(subcommand)]
    Submit(client::SubmitCommand),
    /// Follow a job until it finishes.
    Watch { id: String },
    /// Download a finished job's result.
    Download {
        id: String,
        /// Where to write it (default: <id>.<extension of the result: csv, ndjson, json…>
        /// in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Upload a CSV or NDJSON file and import it into a dataset (upserted by key); follows
    /// the job until it finishes.
    Import {
        file: PathBuf,
        #[arg(long)]
        dataset: String,
        /// csv or ndjson (default: ndjson for .ndjson/.jsonl files, csv otherwise).
        #[arg(long)]
        format: Option<String>,
        /// Check and count only; load nothing.
        #[arg(long)]
        dry_run: bool,
        /// Fail the job when more rows than this are rejected.
        #[arg(long, default_value_t = 0)]
        max_rejected: u64,
        /// Where to write the rejects report when rows were rejected.
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Manage schedules: jobs created on a cron expression in a time zone.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Inspect queues and their dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Print the API's OpenAPI 3.1 document (what `GET /openapi.json` serves with the
    /// built-in kinds; `docs/openapi.json` holds it).
    Openapi,
    /// Container probe: exit 0 when healthy. With --url, the HTTP endpoint must answer 2xx
    /// (the API's /health/ready); without, the database must answer (every service).
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (or add a key to an existing one); prints its new API key and its
    /// webhook secret. The key is shown only this once.
    Create { id: String },
}

pub async fn run(cli: Cli, cfg: Config) -> anyhow::Result<()> {
    let client = || {
        let base = cli
            .api
            .api_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", cfg.api.listen));
        let key = cli
            .api
            .api_key
            .clone()
            .unwrap_or_else(|| cfg.auth.dev_api_key.expose_secret().to_owned());
        client::Client::new(base, key)
    };
    match cli.command {
        Command::Up => up(cfg).await,
        Command::Demo { rows, ref format } => demo::run(cfg, rows, format).await,
        Command::Migrate => {
            let created = jobs_core::db::ensure_database(&cfg.database).await?;
            let pool = jobs_core::db::connect(&cfg.database).await?;
            jobs_core::db::migrate(&pool)
                .await
                .context("migrating the database")?;
            let applied = jobs_core::db::MIGRATOR.iter().count();
            say!(
                "{} database; {applied} migrations applied",
                if created {
                    "created the"
                } else {
                    "using the existing"
                }
            )?;
            Ok(())
        }
        Command::Submit(ref cmd) => {
            let (body, key) = client::export_body(cmd)?;
            let job = client().submit(&body, key.as_deref()).await?;
            say!("{}", serde_json::to_string_pretty(&job)?)?;
            Ok(())
        }
        Command::Watch { ref id } => {
            let job = client().watch(id, false).await?;
            say!("{}", serde_json::to_string_pretty(&job)?)?;
            Ok(())
        }
        Command::Download { ref id, ref output } => {
            let (to, n) = client().download_result(id, output.as_deref()).await?;
            say!("wrote {n} bytes to {}", to.display())?;
            Ok(())
        }
        Command::Import {
            ref file,
            ref dataset,
            ref format,
            dry_run,
            max_rejected,
            ref rejects,
        } => {
            let format = format.clone().unwrap_or_else(|| {
                let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
                if matches!(ext, "ndjson" | "jsonl") {
                    "ndjson"
                } else {
                    "csv"
                }
                .to_owned()
            });
            let c = client();
            let upload = c.upload(file).await?;
            let text = |k: &str| upload[k].as_str().unwrap_or("?").to_owned();
            note!(
                "uploaded {} bytes (sha256 {}) as {}",
                upload["bytes"],
                text("sha256"),
                text("upload_id")
            );
            let body = serde_json::json!({"kind": "import", "import": {
                "dataset": dataset, "upload_id": upload["upload_id"], "format": format,
                "dry_run": dry_run, "max_rejected": max_rejected}});
            let job = c.submit(&body, None).await?;
            let id = job["id"]
                .as_str()
                .context("the API returned no job id")?
                .to_owned();
            let done = c.watch(&id, false).await?;
            say!("{}", serde_json::to_string_pretty(&done)?)?;
            if let (Some(to), Some(_)) = (rejects, done["result"].get("rejects_url")) {
                let n = c.download_file(&id, "rejects", to).await?;
                note!("wrote the rejects report ({n} bytes) to {}", to.display());
            }
            anyhow::ensure!(
                done["status"] == "succeeded",
                "the import {}: {}",
                done["status"],
                done["error"]
            );
            Ok(())
        }
        Command::Schedule(ref cmd) => schedule::run(cmd, &client(), &mut output::Stdout).await,
        Command::Tenant(TenantCommand::Create { ref id }) => {
            let tenant = TenantId::parse(id)?;
            let pool = jobs_core::db::connect(&cfg.database).await?;
            let store = jobs_core::store::JobStore::new(pool);
            let secret = store.ensure_tenant(&tenant, None).await?;
            let key = jobs_core::store::new_api_key();
            store.add_api_key(&tenant, &key).await?;
            say!("tenant:         {tenant}")?;
            say!("api key:        {key}   (shown once; store it now)")?;
            say!("webhook secret: {secret}")?;
            Ok(())
        }
        Command::Queue(cmd) => queue::run(cmd, &cfg).await,
        Command::Openapi => {
            say!(
                "{}",
                jobs_api::openapi::pretty(&jobs_builtins::job_types()).trim_end()
            )?;
            Ok(())
        }
        Command::Healthcheck { ref url } => healthcheck(url.as_deref(), &cfg).await,
    }
}

async fn healthcheck(url: Option<&str>, cfg: &Config) -> anyhow::Result<()> {
    let timeout = std::time::Duration::from_secs(3);
    match url {
        Some(url) => {
            let resp = reqwest::Client::builder()
                .timeout(timeout)
                .build()?
                .get(url)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "{url} answered {}",
                resp.status()
            );
        }
        None => {
            let pool = tokio::time::timeout(timeout, jobs_core::db::connect(&cfg.database))
                .await
                .context("the database did not answer in time")??;
            jobs_core::sqlx::query("SELECT 1").execute(&pool).await?;
        }
    }
    Ok(())
}

async fn up(cfg: Config) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let runtime = Runtime::start(cfg.clone()).await?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", cfg.api.listen))?;
    let services = Services::start(runtime, listener).await?;
    // Output gone is no reason to stop serving: the services keep running.
    let _ = say!("offload is up: API on {} (Ctrl-C stops)", services.api_url);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    note!("stopping: finishing work in progress …");
    services.stop().await;
    Ok(())
}
