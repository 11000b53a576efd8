//! Loading one byte range, in one transaction that commits (of up to three tried):
//!
//! - each begins by claiming the item in `offload.import_commits` with its transaction id —
//!   a redelivered item that committed before finds its row and returns the recorded
//!   counts without loading again (the claim also makes a concurrent second delivery wait,
//!   then see the first one's commit);
//! - the first tries the fast path, `COPY` straight into the table: an initial load, every
//!   row new and valid, is done in that one statement ([`super::stage`]);
//! - otherwise (a row exists already, or is at fault) the second stages the rows in a
//!   temporary table and upserts them by key in one statement ([`super::upsert`]);
//! - when a row is at fault, the third isolates and rejects it, probing under savepoints
//!   that are always rolled back (a bounded number of locks whatever it rejects);
//! - then the rejects file is written, the counts recorded, and the transaction commits —
//!   or, for a dry run, rolls back: the counts and rejects are exactly what a real run
//!   would have had, and nothing stays.
//!
//! None of them keeps a write made under a savepoint, so every row carries the transaction
//! id the claim recorded: a later item of the job that meets such a row by key knows that
//! another part of the file loaded it, leaves it, and rejects its own line.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use sqlx::{Postgres, Transaction};

use super::rejects::{Reject, write_part};
use super::rows::Rows;
use super::stage::{Sent, copy_into, create_sql, stage};
use super::target::{Table, TableColumn};
use super::upsert::{Counts, REPEATS_SQL, Upsert, row_level};
use super::{ByteRange, ImportSpec, rejects_part_path};
use jobs_core::blob::{BlobError, BlobStore};
use jobs_core::dataset::Dataset;
use jobs_core::id::JobId;

/// What one item did; recorded as its output and summed by the finalizer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOutput {
    /// Records read (blank lines aside).
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Valid rows whose target row already held the same values.
    pub unchanged: u64,
    pub rejected: u64,
    /// The item's rejects file, when it has rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_path: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("importing into the database failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The job cannot be processed as stored (a column gone from the table).
    #[error("{0}")]
    Invalid(String),
}

impl LoadError {
    /// Data and definition errors outside a row (SQLSTATE classes 22 and 42) fail the same
    /// way every time; a missing upload too. Connection trouble, deadlocks and storage
    /// errors may not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Db(e) => !jobs_core::db::fails_the_same_way_again(e),
            Self::Blob(e) => !e.is_not_found() && !e.is_changed(),
            Self::Invalid(_) => false,
        }
    }
}

/// What loading one item needs.
#[derive(Debug)]
pub struct LoadItem<'a> {
    pub pool: &'a PgPool,
    pub blobs: &'a BlobStore,
    pub ds: &'a Dataset,
    pub table: &'a Table,
    pub spec: &'a ImportSpec,
    pub upload_path: &'a str,
    pub job_id: JobId,
    pub seq: u32,
}

/// Loads (or, for a dry run, checks) the records of `range`.
pub async fn load_range(item: &LoadItem<'_>, range: &ByteRange) -> Result<ItemOutput, LoadError> {
    let columns: Vec<&TableColumn> = item
        .spec
        .columns
        .iter()
        .map(|name| {
            item.table.column(name).ok_or_else(|| {
                LoadError::Invalid(format!(
                    "column `{name}` is no longer in table {}",
                    item.ds.table_sql
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let key = item
        .spec
        .columns
        .iter()
        .position(|c| *c == item.ds.key.name)
        .ok_or_else(|| LoadError::Invalid("the import's columns lack the key".into()))?;

    let data = item
        .blobs
        .read_range_if(
            item.upload_path,
            range.start..range.end,
            item.spec.upload_etag.as_deref(),
        )
        .await
        .map_err(|e| {
            if e.is_changed() {
                LoadError::Invalid(super::job::CHANGED.into())
            } else {
                e.into()
            }
        })?;
    let rows = || Rows::new(item.spec.format, &data, range.line, &columns, key);
    let upsert = Upsert::new(item.ds, &columns, item.job_id, item.seq);

    // 1. The fast path, `COPY` straight into the table: an initial load.
    let mut tx = match begin(item).await? {
        Begun::Claimed(tx) => tx,
        Begun::Recorded(out) => return Ok(out),
    };
    match copy_into(&mut tx, &item.ds.table_sql, &columns, rows()).await {
        Ok(mut sent) => {
            let counts = Counts {
                inserted: u64::from(sent.rows),
                updated: 0,
            };
            let rejects = std::mem::take(&mut sent.rejects);
            return finish(item, tx, &sent, counts, rejects).await;
        }
        Err(e) if row_level(&e) => {
            tracing::debug!(error = %e, "not a plain insert; upserting");
            tx.rollback().await?;
        }
        Err(e) => return Err(e.into()),
    }

    // 2. Staged and upserted by key in one statement: rows that exist already.
    let mut tx = match begin(item).await? {
        Begun::Claimed(tx) => tx,
        Begun::Recorded(out) => return Ok(out),
    };
    let (sent, mut rejects) = staged(&mut tx, rows(), columns.len()).await?;
    match upsert.whole(&mut tx, sent.rows).await? {
        Ok(counts) => {
            upsert
                .reject_keys_of_other_parts(&mut tx, &columns, key, &mut rejects)
                .await?;
            return finish(item, tx, &sent, counts, rejects).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "a row is at fault; isolating it");
            tx.rollback().await?;
        }
    }

    // 3. The same, with the rows at fault isolated under savepoints and rejected.
    let mut tx = match begin(item).await? {
        Begun::Claimed(tx) => tx,
        Begun::Recorded(out) => return Ok(out),
    };
    let (sent, mut rejects) = staged(&mut tx, rows(), columns.len()).await?;
    let counts = upsert
        .isolate(&mut tx, sent.rows, &columns, key, &mut rejects)
        .await?;
    upsert
        .reject_keys_of_other_parts(&mut tx, &columns, key, &mut rejects)
        .await?;
    finish(item, tx, &sent, counts, rejects).await
}

/// A transaction for the item: claimed, or the counts an earlier delivery recorded.
enum Begun {
    Claimed(Transaction<'static, Postgres>),
    Recorded(ItemOutput),
}

/// Opens the item's transaction and claims the item in `offload.import_commits` with the
/// transaction's id (a dry run claims nothing).
async fn begin(item: &LoadItem<'_>) -> Result<Begun, LoadError> {
    let mut tx = item.pool.begin().await?;
    if !item.spec.dry_run {
        let claimed: Option<i32> = sqlx::query_scalar(
            "INSERT INTO offload.import_commits (job_id, seq, output, xid)
             VALUES ($1, $2, '{}', pg_current_xact_id())
             ON CONFLICT (job_id, seq) DO NOTHING RETURNING seq",
        )
        .bind(item.job_id.as_uuid())
        .bind(item.seq as i32)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            let recorded: serde_json::Value = sqlx::query_scalar(
                "SELECT output FROM offload.import_commits WHERE job_id = $1 AND seq = $2",
            )
            .bind(item.job_id.as_uuid())
            .bind(item.seq as i32)
            .fetch_one(item.pool)
            .await?;
            tracing::info!("item committed by an earlier delivery; its counts stand");
            return serde_json::from_value(recorded)
                .map(Begun::Recorded)
                .map_err(|e| LoadError::Invalid(format!("recorded output unreadable: {e}")));
        }
    }
    // Deferred constraints would fail at COMMIT, after the savepoints that isolate rows.
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await?;
    Ok(Begun::Claimed(tx))
}

/// Stages `rows` in a new staging table; what was sent and the records refused before.
async fn staged(
    tx: &mut Transaction<'static, Postgres>,
    rows: Rows<'_>,
    columns: usize,
) -> Result<(Sent, Vec<Reject>), LoadError> {
    sqlx::query(&create_sql(columns)).execute(&mut **tx).await?;
    sqlx::query(REPEATS_SQL).execute(&mut **tx).await?;
    let mut sent = stage(tx, rows, columns).await?;
    let rejects = std::mem::take(&mut sent.rejects);
    Ok((sent, rejects))
}

/// Counts, writes the rejects file and records the item's output, then commits — or, for a
/// dry run, rolls back.
async fn finish(
    item: &LoadItem<'_>,
    mut tx: Transaction<'static, Postgres>,
    sent: &Sent,
    counts: Counts,
    mut rejects: Vec<Reject>,
) -> Result<ItemOutput, LoadError> {
    let mut out = ItemOutput {
        rows: sent.records,
        inserted: counts.inserted,
        updated: counts.updated,
        unchanged: 0,
        rejected: rejects.len() as u64,
        rejects_path: None,
    };
    let valid = sent.records - out.rejected;
    out.unchanged = valid.saturating_sub(counts.inserted + counts.updated);
    if !rejects.is_empty() {
        let path = rejects_part_path(item.job_id, item.seq);
        write_part(item.blobs, &path, &mut rejects).await?;
        out.rejects_path = Some(path);
    }
    if item.spec.dry_run {
        tx.rollback().await?;
    } else {
        let recorded = serde_json::to_value(&out).map_err(|e| LoadError::Invalid(e.to_string()))?;
        sqlx::query("UPDATE offload.import_commits SET output = $3 WHERE job_id = $1 AND seq = $2")
            .bind(item.job_id.as_uuid())
            .bind(item.seq as i32)
            .bind(recorded)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(out)
}
