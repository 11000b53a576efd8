//! Splitting an ingest job into partitions, one work item each.
//!
//! Id-partitioned sources: ranges of `partition_size` ids from `from_id` to `to_id`, where
//! a missing `to_id` is the source's maximum id, asked once at planning time under a permit
//! of the source's limit (the plan is then recorded, so a redelivered request re-sends the
//! same ranges). Time-partitioned
//! sources: windows of `window_secs` between the stored bounds, the last one shorter.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use super::client::{FetchError, SourceClient, at_pointer};
use super::governor::Governor;
use super::{Bounds, IngestSpec, PARTITION};
use jobs_core::config::{Partition, SourceConfig};
use jobs_core::store::PlannedItem;
use jobs_sdk::jobtype::PlanError;

/// Ranges of `size` ids covering `from..=to` (none when `to < from`).
pub fn id_ranges(from: u64, to: u64, size: u64) -> Vec<Bounds> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start.saturating_add(size - 1).min(to);
        out.push(Bounds::Ids {
            from_id: start,
            to_id: end,
        });
        match end.checked_add(1) {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}

/// Windows of `secs` covering `[since, before)`.
pub fn windows(since: DateTime<Utc>, before: DateTime<Utc>, secs: u64) -> Vec<Bounds> {
    let step = TimeDelta::seconds(i64::try_from(secs.max(1)).unwrap_or(i64::MAX));
    let mut out = Vec::new();
    let mut start = since;
    while start < before {
        let end = start.checked_add_signed(step).unwrap_or(before).min(before);
        out.push(Bounds::Window {
            since: start,
            before: end,
        });
        start = end;
    }
    out
}

/// The partitions of a job, as work items numbered from 0.
pub async fn plan(
    spec: &IngestSpec,
    cfg: &SourceConfig,
    pool: &PgPool,
) -> Result<Vec<PlannedItem>, PlanError> {
    let bounds = match cfg.partition {
        Partition::Id => {
            let from = spec.from_id.unwrap_or(1);
            let to = match spec.to_id {
                Some(to) => to,
                None => max_id(&spec.source, cfg, pool).await?,
            };
            let parts = if to < from {
                0
            } else {
                (to - from) / cfg.partition_size + 1
            };
            if parts > u64::from(cfg.max_partitions) {
                return Err(PlanError::Fatal(format!(
                    "ids {from}..={to} make {parts} partitions of {} ids; source `{}` allows {}",
                    cfg.partition_size, spec.source, cfg.max_partitions
                )));
            }
            id_ranges(from, to, cfg.partition_size)
        }
        Partition::Time => {
            let (Some(since), Some(before)) = (spec.modified_since, spec.modified_before) else {
                return Err(PlanError::Fatal(
                    "the job has no modification-time window".into(),
                ));
            };
            windows(since, before, cfg.window_secs)
        }
    };
    bounds
        .into_iter()
        .enumerate()
        .map(|(seq, b)| {
            Ok(PlannedItem {
                seq: u32::try_from(seq)
                    .map_err(|_| PlanError::Fatal("too many partitions".into()))?,
                kind: PARTITION,
                payload: serde_json::to_value(b).map_err(|e| PlanError::Fatal(e.to_string()))?,
            })
        })
        .collect()
}

/// How long planning waits for a permit of the source before it is retried later.
const PERMIT_WAIT: Duration = Duration::from_secs(30);

/// The source's maximum id (`max_id_path`, at `max_id_pointer`): one request, under a
/// permit of the source's concurrency limit like every other, whose transient failures
/// make the plan retryable.
pub async fn max_id(name: &str, cfg: &SourceConfig, pool: &PgPool) -> Result<u64, PlanError> {
    let client = SourceClient::new(name, cfg).map_err(PlanError::Retryable)?;
    let limit = |e: sqlx::Error| {
        PlanError::Retryable(format!(
            "the limit of source `{name}` in the job store: {e}"
        ))
    };
    let gate = Governor::new(pool.clone())
        .gate(name, cfg.max_concurrency, cfg.permit_lease())
        .await
        .map_err(limit)?;
    let permit = tokio::time::timeout(PERMIT_WAIT, gate.acquire())
        .await
        .map_err(|_| {
            PlanError::Retryable(format!(
                "no permit of source `{name}` came free within {} s",
                PERMIT_WAIT.as_secs()
            ))
        })?
        .map_err(limit)?;
    let answer = client.get_json(&cfg.max_id_path, &[]).await;
    if let Err(e) = gate.release(permit).await {
        // The lease expires by itself; only the permit's early return is lost.
        tracing::warn!(source = name, error = %e, "giving a permit back failed");
    }
    let answer = answer.map_err(|e| match e {
        FetchError::Transient { reason, .. } => PlanError::Retryable(format!(
            "asking source `{name}` for its maximum id: {reason}"
        )),
        FetchError::Permanent { reason } => PlanError::Fatal(format!(
            "asking source `{name}` for its maximum id: {reason}"
        )),
    })?;
    let value = at_pointer(&answer.body, &cfg.max_id_pointer);
    value
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| {
            PlanError::Fatal(format!(
                "source `{name}`: {} did not answer a whole number at {:?}",
                cfg.max_id_path, cfg.max_id_pointer
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_cover_exactly_once() {
        let r = id_ranges(1, 2500, 1000);
        assert_eq!(
            r,
            vec![
                Bounds::Ids {
                    from_id: 1,
                    to_id: 1000
                },
                Bounds::Ids {
                    from_id: 1001,
                    to_id: 2000
                },
                Bounds::Ids {
                    from_id: 2001,
                    to_id: 2500
                },
            ]
        );
        assert!(id_ranges(10, 9, 5).is_empty());
        assert_eq!(id_ranges(7, 7, 5).len(), 1);
        assert_eq!(
            id_ranges(u64::MAX - 1, u64::MAX, 10),
            vec![Bounds::Ids {
                from_id: u64::MAX - 1,
                to_id: u64::MAX
            }]
        );
    }

    #[test]
    fn windows_cover_exactly_once() {
        let at = |s: i64| DateTime::UNIX_EPOCH + TimeDelta::seconds(s);
        let w = windows(at(0), at(250), 100);
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[2],
            Bounds::Window {
                since: at(200),
                before: at(250)
            }
        );
        assert!(windows(at(5), at(5), 100).is_empty());
    }
}
