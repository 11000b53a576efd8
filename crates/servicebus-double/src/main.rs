//! `servicebus-double`: runs the Service Bus double as a process, for trying a client against
//! it by hand. Prints the connection string, serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use servicebus_double::{DoubleOptions, ServiceBusDouble};

/// A local double of Azure Service Bus's REST protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Shared access key name clients must sign with.
    #[arg(long, default_value = "RootManageSharedAccessKey")]
    key_name: String,
    /// Shared access key (a built-in test key by default).
    #[arg(long)]
    key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options = DoubleOptions {
        key_name: args.key_name,
        key: args.key.unwrap_or_else(|| DoubleOptions::default().key),
    };
    let mut double = match ServiceBusDouble::start_on(args.listen, options).await {
        Ok(double) => double,
        Err(e) => {
            eprintln!("servicebus-double: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("{}", double.connection_string());
    if let Err(e) = shutdown_signal().await {
        eprintln!("servicebus-double: cannot wait for signals: {e}");
    }
    double.stop().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn shutdown_signal() -> std::io::Result<()> {
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
