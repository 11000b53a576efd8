//! Supervision of the loops a service runs (consume loops, sweepers, listeners, relays).
//!
//! A loop is meant to run until shutdown. One that panics or returns before then is
//! logged with its cause and started again after a growing back-off, so one bad message or
//! one remote answer cannot silently stop, say, webhooks for every tenant. A loop that keeps
//! failing soon after each start ([`GIVE_UP_AFTER`] times in a row) marks the process not
//! live ([`Liveness`]): the API's `/health/live` answers `503` naming it, and a service
//! binary without an HTTP port exits with an error, so that the orchestrator restarts the
//! process. Supervision goes on meanwhile: a loop that then runs for [`STABLE_AFTER`]
//! clears its mark.
//!
//! The liveness of a process is one thing shared by everything in it ([`Liveness::process`]);
//! tests that make loops fail on purpose give [`supervise`] a `Liveness` of their own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::backoff;

/// Failures in a row, each soon after its start, after which the loop marks the process
/// not live.
pub const GIVE_UP_AFTER: u32 = 5;
/// A loop that ran this long before it stopped is counted as having recovered.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Back-off before a restart: from [`RESTART_BASE`], doubling, at most [`RESTART_CAP`].
pub const RESTART_BASE: Duration = Duration::from_millis(100);
pub const RESTART_CAP: Duration = Duration::from_secs(30);

/// Which supervised loops of a process cannot be kept running, and why.
#[derive(Debug)]
pub struct Liveness {
    /// Loop name → the cause of its last failure, for loops past [`GIVE_UP_AFTER`].
    failing: Mutex<BTreeMap<String, String>>,
    /// Whether anything is failing; waited on by service binaries.
    live: watch::Sender<bool>,
    /// Loop name → how many times it was restarted: what tests and operators look at.
    restarts: Mutex<BTreeMap<String, u64>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            failing: Mutex::new(BTreeMap::new()),
            live: watch::Sender::new(true),
            restarts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Liveness {
    /// This process's liveness, shared by every service and loop in it.
    pub fn process() -> Arc<Liveness> {
        static PROCESS: OnceLock<Arc<Liveness>> = OnceLock::new();
        PROCESS.get_or_init(Arc::default).clone()
    }

    /// The loops that cannot be kept running, with the cause of each one's last failure;
    /// empty when the process is live.
    pub fn failing(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many times loops whose names start with `prefix` were restarted.
    pub fn restarts(&self, prefix: &str) -> u64 {
        let restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        restarts
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    fn count_restart(&self, name: &str) {
        let mut restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        *restarts.entry(name.to_owned()).or_default() += 1;
    }

    pub fn is_live(&self) -> bool {
        self.lock().is_empty()
    }

    /// Resolves once every loop is running again.
    pub async fn regained(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|live| *live).await;
    }

    /// Resolves once some loop cannot be kept running.
    pub async fn lost(&self) {
        let mut rx = self.live.subscribe();
        // The sender lives as long as `self`, so this only ends by the condition.
        let _ = rx.wait_for(|live| !live).await;
    }

    fn mark(&self, name: &str, cause: Option<&str>) {
        let mut failing = self.lock();
        match cause {
            Some(c) => failing.insert(name.to_owned(), c.to_owned()),
            None => failing.remove(name),
        };
        let live = failing.is_empty();
        self.live
            .send_if_modified(|was| std::mem::replace(was, live) != live);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the loop `start` makes until `shutdown`, restarting it whenever it panics or ends
/// before then (see the module's documentation). Returns at shutdown.
pub async fn supervise<F, Fut>(
    name: &str,
    liveness: &Liveness,
    shutdown: &CancellationToken,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let mut running = tokio::spawn(start());
        // Once this start has run STABLE_AFTER the loop has recovered: its mark clears
        // then, while it runs, not only when it next stops.
        let stable = tokio::time::sleep(STABLE_AFTER);
        tokio::pin!(stable);
        let mut recovered = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut running => break outcome,
                () = &mut stable, if !recovered => {
                    recovered = true;
                    failures = 0;
                    liveness.mark(name, None);
                }
            }
        };
        let cause = match outcome {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => "it returned before shutdown".to_owned(),
            Err(e) => match e.try_into_panic() {
                Ok(payload) => format!("it panicked: {}", panic_text(payload.as_ref())),
                Err(e) => format!("its task was cancelled: {e}"),
            },
        };
        if shutdown.is_cancelled() {
            tracing::error!(task = name, %cause, "a service loop failed while shutting down");
            return;
        }
        if started.elapsed() >= STABLE_AFTER {
            failures = 0;
            liveness.mark(name, None);
        }
        failures = failures.saturating_add(1);
        liveness.count_restart(name);
        let pause = backoff(failures, RESTART_BASE, RESTART_CAP).max(RESTART_BASE);
        tracing::error!(task = name, %cause, failures, ?pause, "a service loop stopped; restarting it");
        if failures >= GIVE_UP_AFTER {
            tracing::error!(
                task = name,
                failures,
                "a service loop keeps failing; the process reports itself not live"
            );
            liveness.mark(name, Some(&cause));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// [`supervise`] on a task of its own, with the process's [`Liveness`].
pub fn spawn_supervised<F, Fut>(
    name: impl Into<String>,
    shutdown: CancellationToken,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = name.into();
    tokio::spawn(async move {
        supervise(&name, &Liveness::process(), &shutdown, start).await;
    })
}

/// The message of a panic, when it has one.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A loop that panics on its first starts is restarted until it runs; one that never
    /// runs marks the process not live, and recovers when the loop later keeps running.
    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_restarted_and_liveness_fails_while_it_cannot_be() {
        let liveness = Arc::new(Liveness::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        // Panics on its first GIVE_UP_AFTER + 1 starts, then runs until shutdown.
        let running = CancellationToken::new();
        let task = {
            let (liveness, shutdown, starts, running) = (
                liveness.clone(),
                shutdown.clone(),
                starts.clone(),
                running.clone(),
            );
            tokio::spawn(async move {
                supervise("flaky", &liveness, &shutdown.clone(), move || {
                    let n = starts.fetch_add(1, Ordering::SeqCst) + 1;
                    let (shutdown, running) = (shutdown.clone(), running.clone());
                    async move {
                        assert!(n > GIVE_UP_AFTER + 1, "bad message number {n}");
                        running.cancel();
                        shutdown.cancelled().await;
                    }
                })
                .await;
            })
        };
        liveness.lost().await;
        assert_eq!(starts.load(Ordering::SeqCst), GIVE_UP_AFTER);
        let failing = liveness.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].0, "flaky");
        assert!(failing[0].1.contains("bad message number"), "{failing:?}");

        // Restarts go on: the loop runs, and the mark stays until it has run STABLE_AFTER,
        // then clears while it is still running.
        running.cancelled().await;
        let runs_since = Instant::now();
        assert!(!liveness.is_live());
        tokio::time::timeout(2 * STABLE_AFTER, liveness.regained())
            .await
            .expect("the mark stayed while the loop kept running");
        assert!(runs_since.elapsed() >= STABLE_AFTER);
        assert!(!shutdown.is_cancelled(), "the loop is still running");
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), GIVE_UP_AFTER + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_returns_early_is_restarted_and_a_recovered_one_clears_its_mark() {
        let liveness = Liveness::default();
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        let stop = shutdown.clone();
        supervise("short", &liveness, &shutdown, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let stop = stop.clone();
            async move {
                match n {
                    // Returns at once: GIVE_UP_AFTER quick failures mark it.
                    n if n <= GIVE_UP_AFTER => {}
                    // Then runs long enough to count as recovered, and returns again.
                    n if n == GIVE_UP_AFTER + 1 => tokio::time::sleep(STABLE_AFTER).await,
                    // Then runs until shutdown.
                    _ => stop.cancel(),
                }
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), GIVE_UP_AFTER + 2);
        assert_eq!(liveness.restarts("short"), u64::from(GIVE_UP_AFTER + 1));
        assert!(liveness.is_live(), "{:?}", liveness.failing());
    }
}
