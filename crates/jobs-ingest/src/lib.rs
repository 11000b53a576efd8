//! The `ingest` job kind, registered through the SDK ([`kind`]) like any team's own kind;
//! its job type is in [`job`], its processors and finalizer in `worker.rs`.
//!
//! The ingest job: records of a configured source API, fetched page by page in parallel
//! work items, written as NDJSON pages to the blob store, with a manifest as the result.
//!
//! ```text
//! POST /v1/jobs {"kind": "ingest", "ingest": {"source": "crm", "from_id": 1, "to_id": 50000}}
//! plan:     one item per partition (an id range, or a modification-time window)
//! item:     every page of its partition → ingest/{source}/{job}/{from}-{to}/page-000001.ndjson …
//! finalize: ingest/{source}/{job}/manifest.json (pages, records, per-partition counts)
//! ```
//!
//! - [`spec`] — the request's parameters, checked against the source's configuration;
//! - [`plan`] — partitions;
//! - [`client`] — the source's HTTP API, with its credential;
//! - [`fetch`] — one partition, every page, with retries inside the item;
//! - [`aimd`], [`governor`] — one adaptive concurrency limit per source for all workers.
//!
//! Idempotency: page paths are a function of the job, the partition and the page number,
//! so a retried item overwrites the files of its earlier attempt with the same pages.

pub mod aimd;
pub mod client;
pub mod fetch;
pub mod governor;
pub mod job;
pub mod plan;
pub mod spec;
mod worker;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use jobs_core::blob::BlobStore;
use jobs_core::config::SourceConfig;
use jobs_core::id::JobId;
use jobs_core::kind::WorkKind;

pub use job::IngestJob;
pub use spec::IngestSpec;

/// The job kind (also the request field holding its parameters).
pub const KIND: jobs_core::JobKind = jobs_core::JobKind::from_static("ingest");
/// Work item kind: every page of one partition.
pub const PARTITION: WorkKind = WorkKind::from_static("ingest.partition");
/// Work item kind: the manifest.
pub const FINALIZE: WorkKind = WorkKind::from_static("ingest.finalize");

/// One partition: a work item's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Bounds {
    /// Ids `from_id..=to_id`.
    Ids { from_id: u64, to_id: u64 },
    /// Modified at or after `since` and before `before`.
    Window {
        since: DateTime<Utc>,
        before: DateTime<Utc>,
    },
}

impl Bounds {
    /// `{from}-{to}`: ids, or times as `20260101T000000Z`. Unique within a job.
    pub fn label(&self) -> String {
        match self {
            Self::Ids { from_id, to_id } => format!("{from_id}-{to_id}"),
            Self::Window { since, before } => format!(
                "{}-{}",
                since.format("%Y%m%dT%H%M%SZ"),
                before.format("%Y%m%dT%H%M%SZ")
            ),
        }
    }

    /// The query parameters selecting this partition.
    pub fn query<'a>(&self, cfg: &'a SourceConfig) -> Vec<(&'a str, String)> {
        match self {
            Self::Ids { from_id, to_id } => vec![
                (cfg.from_id_param.as_str(), from_id.to_string()),
                (cfg.to_id_param.as_str(), to_id.to_string()),
            ],
            Self::Window { since, before } => vec![
                (
                    cfg.since_param.as_str(),
                    since.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ),
                (
                    cfg.before_param.as_str(),
                    before.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ),
            ],
        }
    }
}

/// `ingest/{source}/{job}/`: where a job's files are.
pub fn job_prefix(source: &str, job_id: JobId) -> String {
    format!("ingest/{source}/{job_id}/")
}

/// `ingest/{source}/{job}/{from}-{to}/`: where a partition's pages are.
pub fn partition_prefix(source: &str, job_id: JobId, bounds: &Bounds) -> String {
    format!("{}{}/", job_prefix(source, job_id), bounds.label())
}

/// Page `n` (from 1) of a partition: `…/{from}-{to}/page-000001.ndjson`.
pub fn page_path(source: &str, job_id: JobId, bounds: &Bounds, n: u32) -> String {
    format!(
        "{}page-{n:06}.ndjson",
        partition_prefix(source, job_id, bounds)
    )
}

/// The job's result file.
pub fn manifest_path(source: &str, job_id: JobId) -> String {
    format!("{}manifest.json", job_prefix(source, job_id))
}

/// Writes a small object in one put (atomic on every backend: readers see the old
/// object or the new one, never half of it).
pub async fn put_object(blobs: &BlobStore, path: &str, bytes: Vec<u8>) -> Result<(), String> {
    blobs
        .object_store()
        .put(&object_store::path::Path::from(path), bytes.into())
        .await
        .map(|_| ())
        .map_err(|e| format!("writing {path}: {e}"))
}

/// What one partition's item produced, recorded as its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOutput {
    pub bounds: Bounds,
    /// Where its pages are (`page-000001.ndjson` … `page-{pages}.ndjson`).
    pub prefix: String,
    pub pages: u32,
    pub records: u64,
    pub bytes: u64,
    /// Page requests made, including retried ones.
    pub requests: u32,
}

/// The ingest kind, as a deployment registers it (`Kinds::with`).
pub fn kind() -> jobs_sdk::Kind {
    use std::sync::Arc;
    jobs_sdk::Kind {
        job_type: Arc::new(IngestJob),
        processors: vec![Arc::new(worker::IngestPartition::default())],
        finalizer: Arc::new(worker::IngestFinalizer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_deterministic() {
        let job = JobId::new();
        let ids = Bounds::Ids {
            from_id: 1,
            to_id: 1000,
        };
        assert_eq!(
            page_path("crm", job, &ids, 3),
            format!("ingest/crm/{job}/1-1000/page-000003.ndjson")
        );
        let since = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let window = Bounds::Window {
            since,
            before: since + chrono::TimeDelta::hours(1),
        };
        assert_eq!(window.label(), "20260101T000000Z-20260101T010000Z");
        assert_eq!(
            manifest_path("crm", job),
            format!("ingest/crm/{job}/manifest.json")
        );
    }

    #[test]
    fn bounds_round_trip_as_item_payloads() {
        for b in [
            Bounds::Ids {
                from_id: 5,
                to_id: 9,
            },
            Bounds::Window {
                since: DateTime::UNIX_EPOCH,
                before: DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(60),
            },
        ] {
            let json = serde_json::to_value(b).unwrap();
            assert_eq!(serde_json::from_value::<Bounds>(json).unwrap(), b);
        }
        assert!(serde_json::from_value::<Bounds>(serde_json::json!({"from_id": 1})).is_err());
    }
}
