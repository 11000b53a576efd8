//! One concurrency limit per source, shared by every worker of every process through
//! Postgres: a page request needs a permit; the number of permits adapts by itself
//! ([`super::aimd`]).
//!
//! - **Permits are leases** (`offload.source_permits`, with an expiry). Taking one is one
//!   statement that raises `in_use` only while it is below `permits` (the row lock makes
//!   it exact) and records the lease; giving one back deletes the lease and lowers
//!   `in_use` only if the lease still existed. A crashed holder's leases expire and are
//!   reclaimed by whoever is waiting, so its permits come back.
//! - **Feedback** (each request's outcome) is collected per process and applied to the
//!   controller (compare-and-set on the row's version) at least every [`FLUSH_EVERY`],
//!   as soon as a window's worth (a round trip's) is pending, and at once on trouble, so
//!   a decrease is never late by more than one flush.
//! - **Waiting** does not spin: a waiter sleeps until a permit is given back in this
//!   process (a `Notify`: the common case, handed over at once) or until a short, jittered,
//!   growing poll interval ([`POLL_MIN`] to [`POLL_MAX`]) passes, which is how permits
//!   given back by other processes, or reclaimed, are found. LISTEN/NOTIFY was not used:
//!   at hundreds of permits a second, a notification per release would cost more than the
//!   polls it saves, and it needs a dedicated connection per process.
//! - A holder keeps its permit for its next page ([`Gate::keep`]) unless the limit went
//!   below the permits in use, which saves two round trips per page and hands capacity
//!   over without a gap.
//! - **Handing over in process**: a permit given back while requests of this process wait
//!   for one goes to the longest-waiting of them directly — the lease stays taken, nothing
//!   is written — so a partition that ends hands its permit to the next one without a gap
//!   and without two statements on the source's row. A permit goes back to Postgres when no
//!   request here waits for it, or when the limit is below the permits in use. Other
//!   processes' waiters therefore get a permit when this process has no use for it or the
//!   limit grows, which is what a shared limit needs (the requests are the same work,
//!   whichever process makes them).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use super::aimd::{Aimd, AimdParams, Change, Feedback, Signal};

/// Feedback is applied at least this often while requests complete.
pub const FLUSH_EVERY: Duration = Duration::from_millis(25);
/// Feedback waiting beyond this many outcomes is applied at once.
const FLUSH_BATCH: usize = 64;
/// Bounds of the poll interval of a waiter (jittered ±50%).
pub const POLL_MIN: Duration = Duration::from_millis(2);
pub const POLL_MAX: Duration = Duration::from_millis(50);
/// How often a waiter looks for expired leases.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// The gates of the sources this process talks to.
#[derive(Debug)]
pub struct Governor {
    pool: PgPool,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// A permit to have one request in flight to a source, until given back or its lease
/// expires.
#[derive(Debug)]
pub struct Permit {
    id: Uuid,
    /// Renew the lease after this, if the permit is kept.
    renew_at: Instant,
}

/// Permits and in-use count as this process last saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    pub permits: u32,
    pub in_use: u32,
}

/// One source's limit, as this process uses it.
#[derive(Debug)]
pub struct Gate {
    pool: PgPool,
    source: String,
    params: AimdParams,
    lease: Duration,
    /// Woken when a permit is given back here, or the limit grew.
    wake: Notify,
    /// Outcomes not yet applied to the controller.
    pending: Mutex<Vec<Feedback>>,
    /// Held while applying feedback: one flush at a time per process.
    flushing: tokio::sync::Mutex<()>,
    last_flush: Mutex<Instant>,
    last_reclaim: Mutex<Instant>,
    view: Mutex<View>,
    known: Mutex<Known>,
    /// Requests of this process waiting for a permit, oldest first: a permit given back
    /// while one waits is handed to it.
    waiters: Mutex<VecDeque<oneshot::Sender<Permit>>>,
}

/// What the controller counts as trouble, as of this process's last flush.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    /// Answers slower than this (ms).
    slow_ms: Option<f64>,
    /// Not trouble from requests sent before this: the last decrease answered it.
    quiet_until_ms: Option<i64>,
}

impl Governor {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// The gate of `source`, created (with its row) on first use. `max` and `lease` come
    /// from the source's configuration.
    pub async fn gate(
        &self,
        source: &str,
        max: u32,
        lease: Duration,
    ) -> Result<Arc<Gate>, sqlx::Error> {
        if let Some(g) = lock(&self.gates).get(source) {
            return Ok(g.clone());
        }
        sqlx::query(
            "INSERT INTO offload.source_limits (source, permits, state) VALUES ($1, 1, $2)
             ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .bind(Json(Aimd::new()))
        .execute(&self.pool)
        .await?;
        let gate = Arc::new(Gate {
            pool: self.pool.clone(),
            source: source.to_owned(),
            params: AimdParams::new(max),
            lease,
            wake: Notify::new(),
            pending: Mutex::new(Vec::new()),
            flushing: tokio::sync::Mutex::new(()),
            last_flush: Mutex::new(Instant::now()),
            last_reclaim: Mutex::new(Instant::now()),
            view: Mutex::new(View::default()),
            known: Mutex::new(Known::default()),
            waiters: Mutex::new(VecDeque::new()),
        });
        Ok(lock(&self.gates)
            .entry(source.to_owned())
            .or_insert(gate)
            .clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the epoch: the controller's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A request waiting in [`Gate::acquire`]: its place in the gate's queue. Dropped — the
/// request got a permit from Postgres, or stopped waiting — it leaves the queue, and a
/// permit handed to it meanwhile is passed on.
struct Waiting<'a> {
    gate: &'a Arc<Gate>,
    handed: oneshot::Receiver<Permit>,
}

impl<'a> Waiting<'a> {
    fn enqueue(gate: &'a Arc<Gate>) -> Self {
        let (tx, handed) = oneshot::channel();
        let mut waiters = lock(&gate.waiters);
        waiters.retain(|w| !w.is_closed());
        waiters.push_back(tx);
        Self { gate, handed }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.handed.close();
        if let Ok(permit) = self.handed.try_recv() {
            self.gate.pass_on(permit);
        }
    }
}

impl Gate {
    /// Waits for a permit: one handed over by a request of this process that is done with
    /// it, or one taken in Postgres.
    pub async fn acquire(self: &Arc<Self>) -> Result<Permit, sqlx::Error> {
        let mut waiting = Waiting::enqueue(self);
        let mut poll = POLL_MIN;
        loop {
            // Registered before looking, so a permit given back to Postgres while this
            // waiter is looking wakes it (a `notify_one` finds it), instead of being missed
            // until its next poll.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Ok(p) = waiting.handed.try_recv() {
                return self.renewed(p).await;
            }
            if let Some(p) = self.try_acquire().await? {
                return Ok(p);
            }
            self.reclaim_expired_now_and_then().await?;
            let jittered = poll.mul_f64(0.5 + rand::random::<f64>());
            tokio::select! {
                handed = &mut waiting.handed => {
                    if let Ok(p) = handed {
                        return self.renewed(p).await;
                    }
                    // Closed without a permit: only this waiter's own drop closes it.
                    waiting = Waiting::enqueue(self);
                }
                () = woken => {}
                () = tokio::time::sleep(jittered) => {}
            }
            poll = (poll * 2).min(POLL_MAX);
        }
    }

    /// A handed-over permit, its lease renewed if due; if the lease was lost meanwhile
    /// (expired and reclaimed), a fresh permit.
    async fn renewed(self: &Arc<Self>, permit: Permit) -> Result<Permit, sqlx::Error> {
        if Instant::now() < permit.renew_at {
            return Ok(permit);
        }
        match self.renew(permit).await? {
            Some(p) => Ok(p),
            None => Box::pin(self.acquire()).await,
        }
    }

    /// Hands `permit` to the longest-waiting request of this process, if one waits and the
    /// limit is not below the permits in use; otherwise gives it back.
    fn hand_over(&self, permit: Permit) -> Result<(), Permit> {
        let view = self.view();
        if view.in_use > view.permits {
            return Err(permit);
        }
        let mut permit = permit;
        let mut waiters = lock(&self.waiters);
        while let Some(waiter) = waiters.pop_front() {
            match waiter.send(permit) {
                Ok(()) => return Ok(()),
                // That request stopped waiting.
                Err(back) => permit = back,
            }
        }
        Err(permit)
    }

    /// [`Gate::release`] from where nothing can wait: hands the permit over, or gives it
    /// back in a task of its own (without a runtime, its lease expires by itself).
    fn pass_on(self: &Arc<Self>, permit: Permit) {
        let Err(permit) = self.hand_over(permit) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let gate = self.clone();
            runtime.spawn(async move {
                if let Err(e) = gate.give_back(permit).await {
                    tracing::warn!(source = %gate.source, error = %e, "giving a permit back failed");
                }
            });
        }
    }

    /// A permit if one is free now.
    pub async fn try_acquire(&self) -> Result<Option<Permit>, sqlx::Error> {
        let id = Uuid::new_v4();
        let row: Option<(i32, i32)> = sqlx::query_as(
            "WITH taken AS (
                 UPDATE offload.source_limits SET in_use = in_use + 1
                 WHERE source = $1 AND in_use < permits
                 RETURNING source, permits, in_use),
             leased AS (
                 INSERT INTO offload.source_permits (id, source, expires_at)
                 SELECT $2, source, now() + make_interval(secs => $3) FROM taken)
             SELECT permits, in_use FROM taken",
        )
        .bind(&self.source)
        .bind(id)
        .bind(self.lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(permits, in_use)| {
            self.see(permits, in_use);
            Permit {
                id,
                renew_at: Instant::now() + self.lease / 2,
            }
        }))
    }

    /// Gives a permit back: to a request of this process waiting for one, or to Postgres
    /// (a no-op there for one whose lease expired and was reclaimed).
    pub async fn release(&self, permit: Permit) -> Result<(), sqlx::Error> {
        match self.hand_over(permit) {
            Ok(()) => Ok(()),
            Err(permit) => self.give_back(permit).await,
        }
    }

    /// Gives a permit back to Postgres.
    async fn give_back(&self, permit: Permit) -> Result<(), sqlx::Error> {
        let row: Option<(i32, i32)> = sqlx::query_as(
            "WITH gone AS (DELETE FROM offload.source_permits WHERE id = $1 RETURNING source)
             UPDATE offload.source_limits l SET in_use = l.in_use - 1
             FROM gone WHERE l.source = gone.source
             RETURNING l.permits, l.in_use",
        )
        .bind(permit.id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((permits, in_use)) = row {
            self.see(permits, in_use);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// After a request: the permit back for the next request, or `None` when it had to be
    /// given back (the limit went below the permits in use) or its lease was lost.
    pub async fn keep(&self, permit: Permit) -> Result<Option<Permit>, sqlx::Error> {
        let view = self.view();
        if view.in_use > view.permits {
            self.release(permit).await?;
            return Ok(None);
        }
        if Instant::now() < permit.renew_at {
            return Ok(Some(permit));
        }
        self.renew(permit).await
    }

    /// Extends the permit's lease; `None` if it was lost (expired and reclaimed).
    async fn renew(&self, permit: Permit) -> Result<Option<Permit>, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE offload.source_permits SET expires_at = now() + make_interval(secs => $2)
             WHERE id = $1",
        )
        .bind(permit.id)
        .bind(self.lease.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((renewed == 1).then(|| Permit {
            id: permit.id,
            renew_at: Instant::now() + self.lease / 2,
        }))
    }

    /// Records a request's outcome, before its permit is kept or given back.
    ///
    /// Trouble — an overload, or an answer slower than the controller's latency threshold
    /// — is applied before this returns, so the permit is not handed on (to the holder's
    /// next page or to a waiter) under the limit that caused the trouble: each such request
    /// would meet the overload again and, at sources that slow everyone down when
    /// overloaded, prolong it. Other outcomes are applied when [`FLUSH_EVERY`] has passed or
    /// much is pending, in a task of its own, so the reporter goes on at once. A failed
    /// flush is logged; its outcomes are lost, which only delays the limit's adaptation.
    pub async fn report(self: &Arc<Self>, feedback: Feedback) {
        let trouble = {
            let known = lock(&self.known);
            // Trouble met by a request sent before the last decrease was answered by it.
            let answered = known
                .quiet_until_ms
                .is_some_and(|t| feedback.sent_at_ms < t);
            !answered
                && match feedback.signal {
                    Signal::Overloaded => true,
                    Signal::Ok { latency_ms } => known.slow_ms.is_some_and(|t| latency_ms > t),
                }
        };
        let due = {
            let mut pending = lock(&self.pending);
            pending.push(feedback);
            // A window's worth of answers is a round trip's: the limit grows by about one
            // permit per round trip, so applying them at once, not at the next tick,
            // keeps that permit from waiting for the tick.
            let window = usize::try_from(self.view().permits).unwrap_or(usize::MAX);
            pending.len() >= FLUSH_BATCH.min(window.max(1))
                || lock(&self.last_flush).elapsed() >= FLUSH_EVERY
        };
        if trouble {
            let _one_at_a_time = self.flushing.lock().await;
            self.flush_logged().await;
        } else if due {
            let gate = self.clone();
            tokio::spawn(async move {
                if let Ok(_one_at_a_time) = gate.flushing.try_lock() {
                    gate.flush_logged().await;
                }
            });
        }
    }

    async fn flush_logged(&self) {
        if let Err(e) = self.flush_pending().await {
            tracing::warn!(source = %self.source, error = %e, "updating the source limit failed");
        }
    }

    /// Applies the pending outcomes to the stored controller; the caller holds `flushing`.
    ///
    /// Read, compute, then compare-and-set on the row's `version`: the row is locked only
    /// for the one `UPDATE` statement, so permits are taken and given back meanwhile
    /// without waiting. A concurrent flush from another process makes the set miss; the
    /// outcomes are then applied to the state it left, a few times at most.
    async fn flush_pending(&self) -> Result<(), sqlx::Error> {
        const TRIES: usize = 5;
        let events = std::mem::take(&mut *lock(&self.pending));
        *lock(&self.last_flush) = Instant::now();
        if events.is_empty() {
            return Ok(());
        }
        for _ in 0..TRIES {
            let (Json(mut aimd), version): (Json<Aimd>, i64) = sqlx::query_as(
                "SELECT state, version FROM offload.source_limits WHERE source = $1",
            )
            .bind(&self.source)
            .fetch_one(&self.pool)
            .await?;
            let before = aimd.permits();
            let now = now_ms();
            let mut decreased = false;
            for fb in &events {
                decreased |= aimd.observe(&self.params, now, *fb) == Change::Decreased;
            }
            let permits = i32::try_from(aimd.permits()).unwrap_or(i32::MAX);
            let set: Option<i32> = sqlx::query_scalar(
                "UPDATE offload.source_limits
                 SET state = $2, permits = $3, version = version + 1, updated_at = now()
                 WHERE source = $1 AND version = $4
                 RETURNING in_use",
            )
            .bind(&self.source)
            .bind(Json(&aimd))
            .bind(permits)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
            let Some(in_use) = set else {
                continue;
            };
            self.see(permits, in_use);
            *lock(&self.known) = Known {
                slow_ms: aimd.baseline_ms.map(|b| b * self.params.latency_growth),
                quiet_until_ms: aimd.quiet_until_ms.or(aimd.last_decrease_ms),
            };
            if decreased {
                tracing::debug!(source = %self.source, permits, "source limit decreased");
            }
            if aimd.permits() > before {
                self.wake.notify_waiters();
            }
            return Ok(());
        }
        tracing::debug!(source = %self.source, "the source limit kept changing; outcomes dropped");
        Ok(())
    }

    /// Requests of this process waiting for a permit.
    pub fn waiting(&self) -> usize {
        lock(&self.waiters)
            .iter()
            .filter(|w| !w.is_closed())
            .count()
    }

    /// Permits and in-use count as last seen by this process.
    pub fn view(&self) -> View {
        *lock(&self.view)
    }

    fn see(&self, permits: i32, in_use: i32) {
        *lock(&self.view) = View {
            permits: u32::try_from(permits).unwrap_or(0),
            in_use: u32::try_from(in_use).unwrap_or(0),
        };
    }

    async fn reclaim_expired_now_and_then(&self) -> Result<(), sqlx::Error> {
        {
            let mut last = lock(&self.last_reclaim);
            if last.elapsed() < RECLAIM_EVERY {
                return Ok(());
            }
            *last = Instant::now();
        }
        reclaim_expired(&self.pool, &self.source).await?;
        Ok(())
    }
}

/// Deletes `source`'s expired leases and gives their permits back; returns how many.
pub async fn reclaim_expired(pool: &PgPool, source: &str) -> Result<u64, sqlx::Error> {
    let n: Option<i64> = sqlx::query_scalar(
        "WITH gone AS (
             DELETE FROM offload.source_permits WHERE source = $1 AND expires_at < now()
             RETURNING id),
         counted AS (SELECT count(*) AS n FROM gone)
         UPDATE offload.source_limits SET in_use = greatest(in_use - counted.n, 0)
         FROM counted WHERE source = $1 AND counted.n > 0
         RETURNING counted.n",
    )
    .bind(source)
    .fetch_optional(pool)
    .await?;
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// A source's stored limit: (permits, in use, controller state). For tests, benchmarks and
/// operators.
pub async fn snapshot(
    pool: &PgPool,
    source: &str,
) -> Result<Option<(u32, u32, Aimd)>, sqlx::Error> {
    let row: Option<(i32, i32, Json<Aimd>)> = sqlx::query_as(
        "SELECT permits, in_use, state FROM offload.source_limits WHERE source = $1",
    )
    .bind(source)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(p, u, Json(a))| {
        (
            u32::try_from(p).unwrap_or(0),
            u32::try_from(u).unwrap_or(0),
            a,
        )
    }))
}
