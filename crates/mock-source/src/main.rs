//! `mock-source`: serves the mock paginated source API on a loopback port until Ctrl-C or
//! SIGTERM. Every [`MockSourceOptions`] setting is a flag; see `mock-source --help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use mock_source::{MockSource, MockSourceOptions};

/// A mock slow, paginated source API for trying and benchmarking ingest jobs.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Number of records (ids 1..=records).
    #[arg(long, default_value_t = MockSourceOptions::default().records)]
    records: u64,
    /// Largest page served; larger `limit`/`per_page` values are capped to it.
    #[arg(long, default_value_t = MockSourceOptions::default().page_size_max)]
    page_size_max: u32,
    /// Length of each record's payload string.
    #[arg(long, default_value_t = MockSourceOptions::default().payload_bytes)]
    payload_bytes: usize,
    /// Simulated service time of every data request, in milliseconds.
    #[arg(long, default_value_t = millis(MockSourceOptions::default().latency))]
    latency_ms: u64,
    /// Fraction (0.0-1.0) of requests answering 500 at random.
    #[arg(long, default_value_t = MockSourceOptions::default().error_rate)]
    error_rate: f64,
    /// Seed of the random failures, for reproducible runs.
    #[arg(long, default_value_t = MockSourceOptions::default().seed)]
    seed: u64,
    /// Requests in flight above this answer 429 with `Retry-After: 1` (unlimited if unset).
    #[arg(long)]
    concurrency_limit: Option<u32>,
    /// Extra service time while over the concurrency limit, in milliseconds.
    #[arg(long, default_value_t = millis(MockSourceOptions::default().overload_penalty))]
    overload_penalty_ms: u64,
    /// Require `Authorization: Bearer <token>` on data requests.
    #[arg(long, env = "MOCK_SOURCE_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let opts = MockSourceOptions {
        records: cli.records,
        page_size_max: cli.page_size_max,
        payload_bytes: cli.payload_bytes,
        latency: Duration::from_millis(cli.latency_ms),
        error_rate: cli.error_rate,
        seed: cli.seed,
        concurrency_limit: cli.concurrency_limit,
        overload_penalty: Duration::from_millis(cli.overload_penalty_ms),
        auth_token: cli.auth_token,
    };
    let source = MockSource::start_on(cli.listen, opts).await?;
    println!("{}", source.base_url());
    stopped().await?;
    source.shutdown().await
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
