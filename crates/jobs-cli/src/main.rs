//! `offload`: the developer tool. Parses the command line, loads the configuration, sets up
//! telemetry (before the runtime: see `jobs_core::telemetry::init`), then runs the command
//! on a Tokio runtime. A command whose output's reader went away (`offload … | head`)
//! ends quietly, with success, as other Unix tools do.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use jobs_cli::Cli;
use jobs_core::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "offload: {e}");
            return ExitCode::from(2);
        }
    };
    // Interactive commands print their own output; service logs would bury it unless the
    // operator asked for them.
    if !cli.runs_services_in_foreground()
        && cfg.telemetry.log_filter == jobs_core::config::DEFAULT_LOG_FILTER
    {
        cfg.telemetry.log_filter = "warn".into();
    }
    let _telemetry = match jobs_core::telemetry::init(&cfg.telemetry) {
        Ok(guard) => guard,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "offload: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "offload: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(jobs_cli::run(cli, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if jobs_cli::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "offload: {e:#}");
            ExitCode::FAILURE
        }
    }
}
