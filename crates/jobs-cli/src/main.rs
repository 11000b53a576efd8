//! `offload`: the developer tool. Parses the command line, loads the configuration, sets up
//! telemetry and hands over to [`jobs_cli::run`].

use std::process::ExitCode;

use clap::Parser;
use jobs_cli::Cli;
use jobs_core::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("offload: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match jobs_core::telemetry::init(&cfg.telemetry) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("offload: {e}");
            return ExitCode::from(2);
        }
    };
    match jobs_cli::run(cli.command, cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("offload: {e:#}");
            ExitCode::FAILURE
        }
    }
}
