//! The faults injected while a job runs, and driving a job to its end under one.

use std::time::{Duration, Instant};

use anyhow::bail;
use rand::seq::IndexedRandom;
use serde_json::Value;

use crate::stack::{Stack, WORKERS, is_finished};

#[derive(Debug, Clone)]
pub enum Fault {
    None,
    /// SIGKILL a random worker every `every` (and start it again at once), at most `max`.
    KillWorkers {
        every: Duration,
        max: u32,
    },
    /// SIGKILL the API every `every` and start it again at once, at most `max` times: the
    /// job must go on, and clients see the API back.
    KillApi {
        every: Duration,
        max: u32,
    },
    /// Restart the Postgres server once the job has done some work.
    RestartPostgres,
    /// Make the local blob store unusable for `for_` once the job has done some work: its
    /// root is moved away and a file put in its place, so every read and write fails.
    BlobOutage {
        for_: Duration,
    },
}

/// What a fault did while a job ran.
#[derive(Debug, Default)]
pub struct Injected {
    pub kills: u32,
    pub notes: Vec<String>,
}

fn progressed(job: &Value) -> bool {
    job["progress"]["done"].as_u64().unwrap_or(0) > 0
}

/// Polls job `id` until it ends (or `within` passes), injecting `fault` meanwhile.
pub async fn drive(
    stack: &mut Stack,
    id: &str,
    fault: &Fault,
    within: Duration,
) -> anyhow::Result<(Value, Injected)> {
    let started = Instant::now();
    let mut injected = Injected::default();
    let mut last_fault = Instant::now();
    let mut done_once = false;
    let mut outage: Option<(Instant, Duration)> = None;
    loop {
        let job = stack.job(id).await;
        if let Some(job) = &job
            && is_finished(job)
        {
            // Whatever the fault left undone is undone now.
            if outage.is_some() {
                blob_back(stack)?;
            }
            return Ok((job.clone(), injected));
        }
        if started.elapsed() > within {
            bail!("job {id} did not end within {within:?}; last seen {job:?}");
        }
        match fault {
            Fault::None => {}
            Fault::KillWorkers { every, max } => {
                if injected.kills < *max && last_fault.elapsed() >= *every {
                    let victim = *WORKERS.choose(&mut rand::rng()).unwrap_or(&WORKERS[0]);
                    stack.kill(victim).await?;
                    stack.start(victim)?;
                    injected.kills += 1;
                    last_fault = Instant::now();
                }
            }
            Fault::KillApi { every, max } => {
                if injected.kills < *max && last_fault.elapsed() >= *every {
                    stack.kill("api").await?;
                    stack.start("api")?;
                    injected.kills += 1;
                    last_fault = Instant::now();
                }
            }
            Fault::RestartPostgres => {
                if !done_once && job.as_ref().is_some_and(progressed) {
                    let t = Instant::now();
                    restart_postgres().await?;
                    injected.notes.push(format!(
                        "Postgres restarted in {:.1} s",
                        t.elapsed().as_secs_f64()
                    ));
                    done_once = true;
                }
            }
            Fault::BlobOutage { for_ } => {
                if !done_once && job.as_ref().is_some_and(progressed) {
                    blob_away(stack)?;
                    outage = Some((Instant::now(), *for_));
                    done_once = true;
                }
                if let Some((since, length)) = outage
                    && since.elapsed() >= length
                {
                    blob_back(stack)?;
                    injected.notes.push(format!(
                        "blob store unusable for {:.0} s",
                        length.as_secs_f64()
                    ));
                    outage = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `pg_ctlcluster <version> main restart` for the one cluster on this machine, then waits
/// for it to accept connections.
pub async fn restart_postgres() -> anyhow::Result<()> {
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let [version] = versions.as_slice() else {
        bail!("expected one Postgres cluster under /etc/postgresql, found {versions:?}");
    };
    let status = tokio::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "restart"])
        .status()
        .await?;
    if !status.success() {
        bail!("pg_ctlcluster restart failed: {status}");
    }
    Ok(())
}

fn blob_root(stack: &Stack) -> (std::path::PathBuf, std::path::PathBuf) {
    (stack.dir.join("blobs"), stack.dir.join("blobs.away"))
}

fn blob_away(stack: &Stack) -> anyhow::Result<()> {
    let (root, away) = blob_root(stack);
    std::fs::rename(&root, &away)?;
    std::fs::write(&root, b"the blob store is down (chaos suite)")?;
    Ok(())
}

fn blob_back(stack: &Stack) -> anyhow::Result<()> {
    let (root, away) = blob_root(stack);
    std::fs::remove_file(&root)?;
    std::fs::rename(&away, &root)?;
    Ok(())
}
