//! The start-up every service binary shares: `--config <file>`, configuration, telemetry
//! (before the async runtime), the [`Runtime`], and a shutdown token cancelled by SIGTERM
//! or Ctrl-C. A supervised loop that cannot be kept running ([`jobs_core::supervise`]) stops
//! the service with an error. A service's `main` is then one call:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     jobs_queue::service::main("jobs-worker", |rt, stop| async move { /* run until stop */ Ok(()) })
//! }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;
use jobs_core::config::Config;

pub type ServiceError = Box<dyn std::error::Error + Send + Sync>;

/// `--config <file>` from the command line, if given.
fn config_arg() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => file = Some(args.next().ok_or("--config needs a file")?.into()),
            s if s.starts_with("--config=") => file = Some(PathBuf::from(&s["--config=".len()..])),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (the only one is --config <file>)"
                ));
            }
        }
    }
    Ok(file)
}

pub fn main<F, Fut>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Runtime, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("{name}: {e}");
        ExitCode::from(2)
    };
    let file = match config_arg() {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let mut cfg = match Config::load(file.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if cfg.telemetry.service_name == "offload" {
        cfg.telemetry.service_name = name.to_owned();
    }
    let _telemetry = match jobs_core::telemetry::init(&cfg.telemetry) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let outcome = rt.block_on(async move {
        let runtime = Runtime::start(Arc::new(cfg)).await?;
        let stop = CancellationToken::new();
        tokio::spawn(cancel_on_signal(stop.clone()));
        tracing::info!(service = name, "started");
        // A loop that cannot be kept running takes the process down (it has no liveness
        // probe of its own to fail), after the others finish what they hold.
        let liveness = jobs_core::supervise::Liveness::process();
        let running = run(runtime, stop.clone());
        tokio::pin!(running);
        tokio::select! {
            outcome = &mut running => outcome,
            () = liveness.lost() => {
                let failing: Vec<String> = liveness
                    .failing()
                    .into_iter()
                    .map(|(name, cause)| format!("{name} ({cause})"))
                    .collect();
                stop.cancel();
                let _ = running.await;
                Err(format!("stopping: a loop keeps failing: {}", failing.join("; ")).into())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped on an error");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(stop: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still stops");
                    let _ = ctrl_c.await;
                    stop.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing work in progress");
    stop.cancel();
}
