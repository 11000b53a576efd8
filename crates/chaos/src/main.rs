//! `offload-chaos`: the chaos suite. Runs the services as separate processes (the API, the
//! enqueuer, the notifier and three workers) on a database of its own and, job by job,
//! kills workers with SIGKILL during an export and an import, kills the API, the enqueuer
//! and the notifier, restarts Postgres, takes the blob store away, feeds every queue poison and the
//! API malformed bodies. It checks that exports are byte-identical to `COPY`, imports equal
//! their source, every job ends, each job gets one logical webhook and nothing is left
//! locked, prints a table and exits non-zero if any check failed.
//!
//! Loopback only, bounded: every job has a deadline, kills have a budget. Started by
//! `scripts/chaos.sh` (which builds the release binaries first).

mod data;
mod faults;
mod receiver;
mod scenarios;
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use jobs_core::sqlx::{self, Connection, PgConnection, postgres::PgPoolOptions};

use crate::faults::Fault;
use crate::scenarios::{Row, Run};
use crate::stack::Stack;

#[derive(Debug, Parser)]
#[command(about = "The chaos suite: faults injected into separate service processes")]
struct Args {
    /// Rows of the source table (wide, quoted, unicode, NULLs).
    #[arg(long, default_value_t = 2_000_000)]
    rows: i64,
    /// Where the service binaries are.
    #[arg(long, default_value = "target/release")]
    bin: PathBuf,
    /// The Postgres server (trust auth); the suite creates and drops its own database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// Worker SIGKILLs per storm.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Skip the Postgres restart (it disturbs everything else using the server).
    #[arg(long)]
    no_postgres_restart: bool,
    /// Keep the work folder (config, logs, blobs) afterwards.
    #[arg(long)]
    keep: bool,
}

const DATABASE: &str = "offload_chaos";

fn config(server: &str, dir: &std::path::Path, api_port: u16, rows: i64) -> String {
    format!(
        r#"
[database]
url = "{server}/{DATABASE}"
max_connections = 8
[api]
listen = "127.0.0.1:{api_port}"
[auth]
dev_api_key = "{key}"
[download]
signing_key = "chaos-suite-signing-key-0123456789abcdef"
[queue]
lock_duration_secs = 15
poll_interval_ms = 200
shutdown_grace_secs = 5
[worker]
concurrency = 2
retry_base_ms = 500
retry_cap_secs = 30
[notifier]
allow_private_networks = true
retry_schedule_secs = [1, 2, 5, 10]
[blob]
root = "{blobs}"
[import]
chunk_bytes = 2097152
[export]
default_chunk_rows = {chunk_rows}
[datasets.src]
table = "public.chaos_src"
key = "id"
columns = ["id", "name", "note", "amount", "happened_at", "flag", "payload"]
filterable = ["id"]
[datasets.dst]
table = "public.chaos_dst"
key = "id"
columns = ["id", "name", "note", "amount", "happened_at", "flag", "payload"]
"#,
        key = stack::KEY,
        // About 50 parts: enough for kills to land in the middle of a job.
        chunk_rows = (rows / 50).max(1000),
        blobs = dir.join("blobs").display(),
    )
}

async fn fresh_database(server: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("connecting to Postgres")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("| scenario | faults injected | time (s) | outcome | check |");
    println!("|---|---|---:|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {} | {} |",
            r.scenario,
            r.faults,
            r.secs,
            r.outcome,
            if r.ok { "pass" } else { "FAIL" }
        );
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("offload-chaos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("blobs"))?;
    eprintln!("chaos: work folder {}", dir.display());
    fresh_database(&args.server).await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{}/{DATABASE}", args.server))
        .await?;
    jobs_core::db::MIGRATOR.run(&pool).await?;
    eprintln!("chaos: creating {} source rows", args.rows);
    data::create_tables(&pool, args.rows).await?;
    let expected = data::copy_digest(&pool).await?;
    eprintln!("chaos: COPY of the source is {} bytes", expected.0);

    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut stack = Stack::new(
        &dir,
        &args.bin,
        &config(&args.server, &dir, api_port, args.rows),
        format!("http://127.0.0.1:{api_port}"),
    )?;
    stack.start_all()?;
    stack.wait_ready(Duration::from_secs(60)).await?;
    let (hook, deliveries) = receiver::start().await?;
    let mut run = Run {
        stack,
        pool,
        hook,
        deliveries,
        webhook_jobs: Vec::new(),
        rows: Vec::new(),
        expected,
        upload_id: None,
        job_deadline: Duration::from_secs(600),
    };
    let storm = Fault::KillWorkers {
        every: Duration::from_millis(400),
        max: args.kills,
    };
    let steps: Vec<(&str, Fault)> = vec![
        ("export, no faults (baseline)", Fault::None),
        ("export, worker kill storm", storm.clone()),
        ("import, no faults (baseline)", Fault::None),
        ("import, worker kill storm", storm),
        (
            "export, API killed",
            Fault::KillApi {
                every: Duration::from_millis(500),
                max: 5,
            },
        ),
    ];
    let outcome: anyhow::Result<()> = async {
        for (name, fault) in steps {
            eprintln!("chaos: {name}");
            if name.starts_with("export") {
                run.export(name, fault).await?;
            } else {
                run.import(name, fault).await?;
            }
        }
        eprintln!("chaos: enqueuer and notifier kills");
        run.many_small_jobs("18 small exports, enqueuer and notifier killed", 18)
            .await?;
        if !args.no_postgres_restart {
            eprintln!("chaos: Postgres restart");
            run.export("export, Postgres restarted", Fault::RestartPostgres)
                .await?;
        }
        eprintln!("chaos: blob store outage");
        run.export(
            "export, blob store down 20 s",
            Fault::BlobOutage {
                for_: Duration::from_secs(20),
            },
        )
        .await?;
        eprintln!("chaos: poison messages");
        run.poison("poison messages").await?;
        eprintln!("chaos: malformed bodies");
        run.bad_bodies("malformed request bodies").await?;
        run.final_checks().await
    }
    .await;
    let kills = run.stack.kills;
    run.stack.stop_all(Duration::from_secs(10)).await;
    print_table(&run.rows);
    println!("\n{kills} processes killed with SIGKILL in all.");
    if let Err(e) = outcome {
        eprintln!("chaos: stopped early: {e:#}");
        for s in stack::SERVICES {
            eprintln!(
                "--- last lines of {s}'s log:\n{}",
                run.stack.log_tail(s, 15)
            );
        }
        eprintln!("(work folder kept: {})", dir.display());
        return Ok(false);
    }
    let ok = run.rows.iter().all(|r| r.ok);
    if args.keep || !ok {
        eprintln!("chaos: work folder kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}
