//! One partition, start to finish: every page, each fetched under a permit of the
//! source's limit, retried inside the item on transient trouble, written as NDJSON to its
//! deterministic path.
//!
//! A page request that fails transiently (timeout, lost connection, 5xx, 408, 429) gives
//! its permit back, reports the trouble to the limit, waits — the back-off, or the
//! source's `Retry-After` when longer — and tries again, up to `max_attempts` times. Then
//! the item fails as retryable and the queue retries it later (its delivery count decides
//! when to give up); a `Retry-After` longer than `retry_cap_secs` is handed to the queue at
//! once as the delay. Anything else (another 4xx, an answer without the records array) is
//! fatal: no retry can help.
//!
//! A retried item starts again from its first page and rewrites the same files, so pages
//! are never duplicated or lost (as long as the source serves the same records); pages an
//! earlier attempt wrote past the last one are deleted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::aimd::{Feedback, Signal};
use super::client::{FetchError, SourceClient, at_pointer};
use super::governor::{Gate, Permit, now_ms};
use super::{Bounds, PartitionOutput, page_path, partition_prefix, put_object};
use tokio::task::JoinHandle;

use jobs_core::blob::BlobStore;
use jobs_core::config::Pagination;
use jobs_core::id::JobId;
use jobs_core::process::{ProcessError, backoff};

/// What fetching one partition needs.
#[derive(Debug, Clone, Copy)]
pub struct PartitionFetch<'a> {
    pub client: &'a SourceClient,
    pub gate: &'a Arc<Gate>,
    pub blobs: &'a BlobStore,
    pub job_id: JobId,
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Offset(u64),
    Page(u64),
    Cursor(Option<String>),
}

fn db(e: sqlx::Error) -> ProcessError {
    ProcessError::retryable(format!("the source limit in the job store: {e}"))
}

/// Fetches every page of `bounds` and writes them; the permit held is always given back.
pub async fn ingest_partition(
    f: PartitionFetch<'_>,
    bounds: &Bounds,
) -> Result<PartitionOutput, ProcessError> {
    let mut permit = None;
    let result = fetch_pages(f, bounds, &mut permit).await;
    if let Some(p) = permit.take()
        && let Err(e) = f.gate.release(p).await
    {
        // The lease expires by itself; only the permit's early return is lost.
        tracing::warn!(error = %e, "giving a permit back failed");
    }
    let out = result?;
    remove_stale_pages(f.blobs, &out.prefix, out.pages).await?;
    Ok(out)
}

/// Deletes the pages past the `pages` just written under `prefix`: an earlier attempt of
/// the item, against a source that has since lost records, wrote more.
pub async fn remove_stale_pages(
    blobs: &BlobStore,
    prefix: &str,
    pages: u32,
) -> Result<(), ProcessError> {
    let failed = |e: jobs_core::blob::BlobError| {
        ProcessError::retryable(format!("removing stale pages under {prefix}: {e}"))
    };
    for path in blobs.list(prefix).await.map_err(failed)? {
        let n = path
            .strip_prefix(prefix)
            .and_then(|name| name.strip_prefix("page-"))
            .and_then(|name| name.strip_suffix(".ndjson"))
            .and_then(|n| n.parse::<u32>().ok());
        if n.is_some_and(|n| n > pages) {
            blobs.delete(&path).await.map_err(failed)?;
            tracing::info!(%path, "stale page removed");
        }
    }
    Ok(())
}

async fn fetch_pages(
    f: PartitionFetch<'_>,
    bounds: &Bounds,
    permit: &mut Option<Permit>,
) -> Result<PartitionOutput, ProcessError> {
    let cfg = &f.client.cfg;
    let name = f.client.name.as_str();
    let page_size = u64::from(cfg.page_size);
    let mut out = PartitionOutput {
        bounds: *bounds,
        prefix: partition_prefix(name, f.job_id, bounds),
        pages: 0,
        records: 0,
        bytes: 0,
        requests: 0,
    };
    let mut writing: Option<JoinHandle<Result<u64, String>>> = None;
    let mut position = match cfg.pagination {
        Pagination::Offset => Position::Offset(0),
        Pagination::Page => Position::Page(1),
        Pagination::Cursor => Position::Cursor(None),
    };
    loop {
        let mut query = bounds.query(cfg);
        match &position {
            Position::Offset(o) => {
                query.push((cfg.offset_param.as_str(), o.to_string()));
                query.push((cfg.limit_param.as_str(), page_size.to_string()));
            }
            Position::Page(p) => {
                query.push((cfg.page_param.as_str(), p.to_string()));
                query.push((cfg.per_page_param.as_str(), page_size.to_string()));
            }
            Position::Cursor(c) => {
                if let Some(c) = c {
                    query.push((cfg.cursor_param.as_str(), c.clone()));
                }
                query.push((cfg.limit_param.as_str(), page_size.to_string()));
            }
        }
        let body = fetch_page(f, &query, permit, &mut out.requests).await?;
        let records = at_pointer(&body, &cfg.records_pointer)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ProcessError::fatal(format!(
                    "source `{name}`: the answer to GET {} has no array at {:?}",
                    cfg.records_path, cfg.records_pointer
                ))
            })?;
        let count = records.len() as u64;
        if count > 0 {
            out.pages += 1;
            out.records += count;
            // The page is written while the next one is fetched; one write at a time.
            let page = encode_page(records)?;
            if let Some(previous) = writing.take() {
                out.bytes += finish_write(previous).await?;
            }
            let (blobs, path) = (
                f.blobs.clone(),
                page_path(name, f.job_id, bounds, out.pages),
            );
            writing = Some(tokio::spawn(async move {
                let bytes = page.len() as u64;
                put_object(&blobs, &path, page).await.map(|()| bytes)
            }));
        }
        position = match position {
            Position::Offset(_) | Position::Page(_) if count < page_size => break,
            Position::Offset(o) => Position::Offset(o + count),
            Position::Page(p) => Position::Page(p + 1),
            Position::Cursor(previous) => {
                let next = at_pointer(&body, &cfg.next_cursor_pointer)
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty());
                let Some(next) = next else { break };
                if previous.as_deref() == Some(next) {
                    return Err(ProcessError::fatal(format!(
                        "source `{name}` answered the same cursor twice"
                    )));
                }
                Position::Cursor(Some(next.to_owned()))
            }
        };
    }
    if let Some(last) = writing.take() {
        out.bytes += finish_write(last).await?;
    }
    Ok(out)
}

/// Waits for a page write; its bytes.
async fn finish_write(write: JoinHandle<Result<u64, String>>) -> Result<u64, ProcessError> {
    write
        .await
        .map_err(|e| ProcessError::retryable(format!("writing a page: {e}")))?
        .map_err(ProcessError::retryable)
}

/// One page request, under a permit, with retries. The permit is kept in `permit` for the
/// next page when the limit allows.
async fn fetch_page(
    f: PartitionFetch<'_>,
    query: &[(&str, String)],
    permit: &mut Option<Permit>,
    requests: &mut u32,
) -> Result<Value, ProcessError> {
    let cfg = &f.client.cfg;
    let mut last: Option<(String, Option<Duration>)> = None;
    for attempt in 1..=cfg.max_attempts {
        let held = match permit.take() {
            Some(p) => p,
            None => f.gate.acquire().await.map_err(db)?,
        };
        let sent_at_ms = now_ms();
        let view = f.gate.view();
        let (window, in_use) = (view.permits, view.in_use);
        *requests += 1;
        let answer = f.client.get_json(&cfg.records_path, query).await;
        match answer {
            Ok(answer) => {
                let latency_ms = answer.latency.as_secs_f64() * 1000.0;
                f.gate
                    .report(Feedback {
                        sent_at_ms,
                        window,
                        in_use,
                        signal: Signal::Ok { latency_ms },
                    })
                    .await;
                *permit = f.gate.keep(held).await.map_err(db)?;
                return Ok(answer.body);
            }
            Err(FetchError::Permanent { reason }) => {
                f.gate.release(held).await.map_err(db)?;
                return Err(ProcessError::fatal(format!(
                    "source `{}`: {reason}",
                    f.client.name
                )));
            }
            Err(FetchError::Transient {
                reason,
                retry_after,
            }) => {
                f.gate
                    .report(Feedback {
                        sent_at_ms,
                        window,
                        in_use,
                        signal: Signal::Overloaded,
                    })
                    .await;
                f.gate.release(held).await.map_err(db)?;
                tracing::debug!(attempt, %reason, ?retry_after, "page request failed; retrying");
                if let Some(after) = retry_after.filter(|a| *a > cfg.retry_cap()) {
                    // A long wait is the queue's job: the message comes back then.
                    return Err(ProcessError::retry_after(
                        format!("source `{}`: {reason}", f.client.name),
                        after,
                    ));
                }
                if attempt < cfg.max_attempts {
                    let delay = backoff(attempt, cfg.retry_base(), cfg.retry_cap())
                        .max(retry_after.unwrap_or_default());
                    tokio::time::sleep(delay).await;
                }
                last = Some((reason, retry_after));
            }
        }
    }
    let (reason, retry_after) = last.unwrap_or_default();
    Err(ProcessError::Retryable {
        reason: format!(
            "source `{}`: {reason} (after {} tries)",
            f.client.name, cfg.max_attempts
        ),
        retry_after,
    })
}

/// A page as NDJSON: one record per line. Written at its deterministic path in one put, so
/// a retried item's copy replaces the earlier attempt's whole.
fn encode_page(records: &[Value]) -> Result<Vec<u8>, ProcessError> {
    let mut buf = Vec::with_capacity(records.len() * 128);
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| ProcessError::fatal(e.to_string()))?;
        buf.push(b'\n');
    }
    Ok(buf)
}
