//! Planning an export: key ranges of about `chunk_rows` rows each.

use sqlx::PgPool;

use super::{CHUNK, ExportSpec, KeyRange, sql};
use crate::dataset::Dataset;
use crate::store::PlannedItem;

/// Splits the export into parts of `chunk_rows` rows by exact key boundaries of the
/// filtered rows (see [`sql::boundaries`]): `n` boundaries make `n + 1` ranges, the last
/// open-ended, so rows inserted after planning with larger keys still land in the last
/// part. An empty selection is one (empty) part, so the result is a file with a header.
pub async fn plan(
    pool: &PgPool,
    ds: &Dataset,
    spec: &ExportSpec,
) -> Result<Vec<PlannedItem>, sqlx::Error> {
    let bound = sql::boundaries(ds, spec);
    let mut tx = pool.begin().await?;
    bound.apply(&mut tx).await?;
    let keys: Vec<String> = sqlx::query_scalar(&bound.sql)
        .bind(i64::from(spec.chunk_rows))
        .fetch_all(&mut *tx)
        .await?;
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
