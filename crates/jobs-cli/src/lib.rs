//! The `offload` command line: migrations and queue inspection. (Running all services in one
//! process, submit, watch, download and the demo arrive with the export issue.)

mod queue;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jobs_core::Config;

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if it is missing and apply pending migrations.
    Migrate,
    /// Inspect queues and their dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
}

pub async fn run(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let created = jobs_core::db::ensure_database(&cfg.database).await?;
            let pool = jobs_core::db::connect(&cfg.database).await?;
            jobs_core::db::migrate(&pool)
                .await
                .context("migrating the database")?;
            let applied = jobs_core::db::MIGRATOR.iter().count();
            println!(
                "{} database; {applied} migrations applied",
                if created {
                    "created the"
                } else {
                    "using the existing"
                }
            );
            Ok(())
        }
        Command::Queue(cmd) => queue::run(cmd, &cfg).await,
    }
}
