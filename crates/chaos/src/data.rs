//! The data the suite moves, shaped as real data is (wide rows, every kind of text field
//! a CSV writer can get wrong, NULLs and empty strings, unicode, sparse and skewed keys),
//! and the checks made against Postgres itself: `COPY` for exports, `EXCEPT` both ways for
//! imports.

use jobs_core::sqlx::{self, PgPool};
use sha2::{Digest, Sha256};

pub const COLUMNS: &str = "id, name, note, amount, happened_at, flag, payload";

/// Creates `public.chaos_src` with `rows` rows and an empty `public.chaos_dst` like it.
pub async fn create_tables(pool: &PgPool, rows: i64) -> anyhow::Result<()> {
    for sql in [
        "DROP TABLE IF EXISTS public.chaos_src, public.chaos_dst",
        "CREATE TABLE public.chaos_src (
             id bigint PRIMARY KEY, name text, note text, amount numeric(14,2),
             happened_at timestamptz, flag boolean, payload text)",
    ] {
        sqlx::query(sql).execute(pool).await?;
    }
    sqlx::query(
        r#"INSERT INTO public.chaos_src
           SELECT CASE WHEN g % 10 = 0 THEN g::bigint * g ELSE g END,
                  (ARRAY['Müller, Anna', 'O''Brien "Bob"', 'plain', '東京 支店', ''])[1 + g % 5],
                  CASE g % 7
                      WHEN 0 THEN NULL
                      WHEN 1 THEN ''
                      WHEN 2 THEN E'two\nlines, "quoted"'
                      WHEN 3 THEN E'tab\there; semi;colon'
                      WHEN 4 THEN 'ünïcödé 🚀 ' || g
                      WHEN 5 THEN E'\\.'
                      ELSE 'note ' || g END,
                  CASE WHEN g % 11 = 0 THEN NULL ELSE round((g * 7.31)::numeric % 100000, 2) END,
                  CASE WHEN g % 13 = 0 THEN NULL
                       ELSE timestamptz '2026-01-01 00:00:00+00' + g * interval '37 seconds' END,
                  CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
                  '"' || repeat(md5(g::text), 3) || '", ' || repeat('x', (g % 50)::int)
           FROM generate_series(1::bigint, $1) AS g"#,
    )
    .bind(rows)
    .execute(pool)
    .await?;
    sqlx::query("CREATE TABLE public.chaos_dst (LIKE public.chaos_src INCLUDING ALL)")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE public.chaos_src")
        .execute(pool)
        .await?;
    Ok(())
}

/// Bytes and SHA-256 of what Postgres's own `COPY` writes for the source in key order.
pub async fn copy_digest(pool: &PgPool) -> anyhow::Result<(u64, String)> {
    use futures::TryStreamExt;
    let mut conn = pool.acquire().await?;
    let mut stream = conn
        .copy_out_raw(&format!(
            "COPY (SELECT {COLUMNS} FROM public.chaos_src ORDER BY id) TO STDOUT (FORMAT csv, HEADER)"
        ))
        .await?;
    let (mut bytes, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = stream.try_next().await? {
        bytes += chunk.len() as u64;
        hash.update(&chunk);
    }
    Ok((bytes, hex(&hash.finalize())))
}

pub fn digest(data: &[u8]) -> (u64, String) {
    (data.len() as u64, hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rows of the source missing from the destination plus the reverse (NULLs compare equal
/// in `EXCEPT`).
pub async fn differences(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT (SELECT count(*) FROM (SELECT {COLUMNS} FROM public.chaos_src
                 EXCEPT SELECT {COLUMNS} FROM public.chaos_dst) a)
              + (SELECT count(*) FROM (SELECT {COLUMNS} FROM public.chaos_dst
                 EXCEPT SELECT {COLUMNS} FROM public.chaos_src) b)"
    ))
    .fetch_one(pool)
    .await?)
}
