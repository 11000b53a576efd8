//! `offload schedule …`: create, list, show, change, pause, resume and delete schedules
//! through the HTTP API (`/v1/schedules`), as `offload submit` submits jobs.
//!
//! Every command prints what the API answered: the schedule as JSON (`create`, `show`,
//! `update`, `pause`, `resume`), a table (`list`, every page), or one line (`delete`). An
//! API refusal (4xx) is an error carrying the API's message and the field it names.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use jobs_core::schedule::ScheduleId;

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: a job request fired on a cron expression in a time zone.
    Create {
        #[arg(long)]
        name: String,
        /// Cron expression: five fields (minute hour day-of-month month day-of-week), or six
        /// with seconds first, e.g. "0 6 1,15 * *".
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is read in (the API's default: UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The job to create at every tick, the body `POST /v1/jobs` takes: JSON (starting
        /// with `{`), a file holding it, or `-` for standard input.
        #[arg(long, value_name = "FILE_OR_JSON")]
        job: String,
    },
    /// List the tenant's schedules, newest first.
    List,
    /// Show a schedule with its recent runs.
    Show { id: String },
    /// Change a schedule: only the options given change. A new cron expression or time
    /// zone moves the next run to the first tick of the new timetable after now.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        cron: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
        /// The new job request: JSON (starting with `{`), a file holding it, or `-`.
        #[arg(long, value_name = "FILE_OR_JSON")]
        job: Option<String>,
    },
    /// Stop a schedule's ticks until it is resumed.
    Pause { id: String },
    /// Fire again, from the first tick after now.
    Resume { id: String },
    /// Delete a schedule (the jobs it made stay).
    Delete { id: String },
}

/// Runs `cmd` against the API, writing what it answered to `out`.
pub async fn run(cmd: &ScheduleCommand, api: &Client, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = |id: &str, tail: &str| -> anyhow::Result<String> {
        Ok(format!("/v1/schedules/{}{tail}", schedule_id(id)?))
    };
    let doc = match cmd {
        ScheduleCommand::Create {
            name,
            cron,
            timezone,
            job,
        } => {
            let mut body = json!({ "name": name, "cron": cron, "job": job_request(job)? });
            if let Some(tz) = timezone {
                body["timezone"] = json!(tz);
            }
            api.call(Method::POST, "/v1/schedules", Some(&body)).await?
        }
        ScheduleCommand::List => return list(api, out).await,
        ScheduleCommand::Show { id } => api.call(Method::GET, &path(id, "")?, None).await?,
        ScheduleCommand::Update {
            id,
            name,
            cron,
            timezone,
            job,
        } => {
            let mut body = serde_json::Map::new();
            for (key, value) in [("name", name), ("cron", cron), ("timezone", timezone)] {
                if let Some(v) = value {
                    body.insert(key.to_owned(), json!(v));
                }
            }
            if let Some(job) = job {
                body.insert("job".to_owned(), job_request(job)?);
            }
            if body.is_empty() {
                bail!("nothing to change: give --name, --cron, --timezone or --job");
            }
            api.call(Method::PATCH, &path(id, "")?, Some(&Value::Object(body)))
                .await?
        }
        ScheduleCommand::Pause { id } => api.call(Method::POST, &path(id, "/pause")?, None).await?,
        ScheduleCommand::Resume { id } => {
            api.call(Method::POST, &path(id, "/resume")?, None).await?
        }
        ScheduleCommand::Delete { id } => {
            api.call(Method::DELETE, &path(id, "")?, None).await?;
            writeln!(out, "deleted schedule {id}")?;
            return Ok(());
        }
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// A schedule id checked before it goes into a path: a UUID, as the API gives them.
fn schedule_id(id: &str) -> anyhow::Result<ScheduleId> {
    id.trim().parse().with_context(|| {
        format!("`{id}` is not a schedule id (a UUID such as `offload schedule list` shows)")
    })
}

/// `--job`: inline JSON, a file, or `-` (standard input).
fn job_request(arg: &str) -> anyhow::Result<Value> {
    let (text, source) = if arg.trim_start().starts_with('{') {
        (arg.to_owned(), "--job".to_owned())
    } else if arg == "-" {
        let text = std::io::read_to_string(std::io::stdin()).context("reading --job from stdin")?;
        (text, "--job (standard input)".to_owned())
    } else {
        let text = std::fs::read_to_string(Path::new(arg)).with_context(|| {
            format!("--job {arg}: neither JSON (starting with `{{`) nor a readable file")
        })?;
        (text, format!("--job file {arg}"))
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))
}

/// Every page of `GET /v1/schedules`, as a table.
async fn list(api: &Client, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<36}  {:<7}  {:<25}  {:<16}  {:<16}  NAME",
        "ID", "ENABLED", "NEXT RUN (LOCAL)", "CRON", "TIMEZONE"
    )?;
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("/v1/schedules?limit=100&cursor={c}"),
            None => "/v1/schedules?limit=100".to_owned(),
        };
        let page = api.call(Method::GET, &page_path, None).await?;
        for s in page["schedules"].as_array().into_iter().flatten() {
            let text = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
            writeln!(
                out,
                "{:<36}  {:<7}  {:<25}  {:<16}  {:<16}  {}",
                text("id"),
                if s["enabled"] == true {
                    "yes"
                } else {
                    "paused"
                },
                text("next_run_at_local"),
                text("cron"),
                text("timezone"),
                text("name"),
            )?;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}
