//! Planning an export: key ranges of about `chunk_rows` rows each.

use sqlx::PgPool;

use super::{CHUNK, ExportSpec, KeyRange, sql};
use jobs_core::dataset::Dataset;
use jobs_core::store::PlannedItem;

/// Rows sampled from a large table to place its boundaries.
const SAMPLE_ROWS: f64 = 200_000.0;

/// Splits the export into parts of about `chunk_rows` rows by key boundaries of the
/// filtered rows: `n` boundaries make `n + 1` ranges, the last open-ended, so rows inserted
/// after planning with larger keys still land in the last part. An empty selection is one
/// (empty) part, so the result is a file with a header.
///
/// Boundaries come from the keys themselves, so parts stay balanced however sparse or
/// skewed the keys are: exactly every `chunk_rows`-th key for tables of up to
/// `exact_max_rows` rows (and views), quantiles of a page sample of ~200,000 rows for
/// larger tables (parts then hold `chunk_rows` ± a few percent).
pub async fn plan(
    pool: &PgPool,
    ds: &Dataset,
    spec: &ExportSpec,
    exact_max_rows: u64,
) -> Result<Vec<PlannedItem>, sqlx::Error> {
    let (estimate, kind): (f64, String) = sqlx::query_as(
        "SELECT greatest(reltuples, 0)::float8, relkind::text FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(&ds.table_sql)
    .fetch_optional(pool)
    .await?
    .unwrap_or((0.0, "v".into()));
    let sample = estimate > exact_max_rows as f64 && matches!(kind.as_str(), "r" | "m" | "p");
    let mut tx = pool.begin().await?;
    let keys: Vec<String> = if sample {
        let percent = (SAMPLE_ROWS / estimate * 100.0).min(100.0);
        let bound = sql::sampled_keys(ds, spec);
        bound.apply(&mut tx).await?;
        let sampled: Vec<String> = sqlx::query_scalar(&bound.sql)
            .bind(percent)
            .fetch_all(&mut *tx)
            .await?;
        quantiles(&sampled, percent, spec.chunk_rows)
    } else {
        let bound = sql::boundaries(ds, spec);
        bound.apply(&mut tx).await?;
        sqlx::query_scalar(&bound.sql)
            .bind(i64::from(spec.chunk_rows))
            .fetch_all(&mut *tx)
            .await?
    };
    tx.commit().await?;
    Ok(ranges(keys)
        .into_iter()
        .enumerate()
        .map(|(seq, range)| PlannedItem {
            seq: seq as u32,
            kind: CHUNK,
            payload: serde_json::to_value(range).unwrap_or_default(),
        })
        .collect())
}

/// Boundaries for parts of `chunk_rows` from a sorted sample taken at `percent`.
fn quantiles(sample: &[String], percent: f64, chunk_rows: u32) -> Vec<String> {
    let estimated = sample.len() as f64 * 100.0 / percent;
    let parts = (estimated / f64::from(chunk_rows)).round().max(1.0) as usize;
    let mut out: Vec<String> = (1..parts)
        .map(|i| sample[i * sample.len() / parts].clone())
        .collect();
    out.dedup();
    out
}

fn ranges(boundaries: Vec<String>) -> Vec<KeyRange> {
    let mut out = Vec::with_capacity(boundaries.len() + 1);
    let mut after = None;
    for b in boundaries {
        out.push(KeyRange {
            after: after.take(),
            upto: Some(b.clone()),
        });
        after = Some(b);
    }
    out.push(KeyRange { after, upto: None });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_quantiles_split_evenly() {
        let sample: Vec<String> = (0..1000).map(|i| format!("{i:04}")).collect();
        // 1000 sampled at 10% ≈ 10,000 rows; parts of 2,500 → 4 parts, 3 boundaries.
        assert_eq!(quantiles(&sample, 10.0, 2500), ["0250", "0500", "0750"]);
        assert!(quantiles(&sample, 10.0, 1_000_000).is_empty());
        assert!(quantiles(&[], 10.0, 10).is_empty());
    }

    #[test]
    fn boundaries_make_contiguous_ranges() {
        assert_eq!(
            ranges(vec![]),
            [KeyRange {
                after: None,
                upto: None
            }]
        );
        assert_eq!(
            ranges(vec!["10".into(), "20".into()]),
            [
                KeyRange {
                    after: None,
                    upto: Some("10".into())
                },
                KeyRange {
                    after: Some("10".into()),
                    upto: Some("20".into())
                },
                KeyRange {
                    after: Some("20".into()),
                    upto: None
                },
            ]
        );
    }
}
