//! Exporting one part: `COPY … TO STDOUT` streamed into the blob store.
//!
//! Memory stays bounded whatever the size of the part: COPY data arrives in chunks of at
//! most 64 KiB and the blob writer keeps at most a few upload parts in flight. The part is
//! written at a deterministic path, so a retry overwrites it whole.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{ExportFormat, ExportSpec, KeyRange, part_path, sql};
use jobs_core::blob::{BlobError, BlobStore};
use jobs_core::dataset::Dataset;
use jobs_core::id::JobId;

/// What a part produced; recorded as the work item's output and read by assembly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOutput {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("exporting from the database failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl PartError {
    /// Whether trying again may help. Data and definition errors (SQLSTATE classes 22 and
    /// 42: a value that no longer casts, a dropped column) will fail the same way again;
    /// connection trouble, serialization failures and storage errors may not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Db(e) => !jobs_core::db::fails_the_same_way_again(e),
            Self::Blob(_) => true,
        }
    }
}

/// Counts records in a stream of CSV or NDJSON bytes: line ends outside double quotes. In
/// CSV a quote inside a value is doubled, which toggles the state twice and leaves it
/// unchanged; NDJSON has no raw newlines inside documents.
#[derive(Debug, Default)]
pub struct RecordCounter {
    in_quotes: bool,
    records: u64,
    csv: bool,
}

impl RecordCounter {
    pub fn new(format: ExportFormat) -> Self {
        Self {
            csv: format == ExportFormat::Csv,
            ..Self::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.csv {
            self.records += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            return;
        }
        for &b in chunk {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.records += 1,
                _ => {}
            }
        }
    }

    pub fn records(&self) -> u64 {
        self.records
    }
}

/// Exports part `seq` (the key range `range`) of an export job.
pub async fn export_part(
    pool: &PgPool,
    blobs: &BlobStore,
    ds: &Dataset,
    spec: &ExportSpec,
    job_id: JobId,
    seq: u32,
    range: &KeyRange,
) -> Result<PartOutput, PartError> {
    let header = seq == 0 && spec.format == ExportFormat::Csv;
    let bound = sql::copy_part(ds, spec, range, header);
    let path = part_path(job_id, seq, spec.format);
    let mut writer = blobs.writer(&path).await?;
    let mut counter = RecordCounter::new(spec.format);

    let copied: Result<(), PartError> = async {
        let mut tx = pool.begin().await?;
        bound.apply(&mut tx).await?;
        {
            let mut stream = tx.copy_out_raw(&bound.sql).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                counter.feed(&chunk);
                writer.write(&chunk).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        writer.abort().await;
        return Err(e);
    }
    let written = writer.finish().await?;
    let rows = counter.records() - u64::from(header);
    Ok(PartOutput {
        path,
        rows,
        bytes: written.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_outside_quotes_across_chunks() {
        let csv = b"id,note\n1,\"two\nlines\"\n2,\"say \"\"hi\"\"\"\n3,plain\n";
        for split in 0..csv.len() {
            let mut c = RecordCounter::new(ExportFormat::Csv);
            c.feed(&csv[..split]);
            c.feed(&csv[split..]);
            assert_eq!(c.records(), 4, "split at {split}");
        }
        let mut n = RecordCounter::new(ExportFormat::Ndjson);
        n.feed(b"{\"a\":\"x\\ny\"}\n{\"a\":\"\\\"\"}\n");
        assert_eq!(n.records(), 2);
    }
}
