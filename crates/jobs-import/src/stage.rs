//! Sending a range's rows to Postgres with `COPY`, one of two ways:
//!
//! - [`copy_into`], the fast path: straight into the target table, as CSV (every value
//!   quoted, NULL left unquoted-empty, so Postgres reads back exactly the parsed fields).
//!   `COPY` inserts in batches and is as fast as loading gets; it succeeds when every row
//!   is new and valid — an initial load — and the caller runs it in a transaction of its
//!   own, so a row that exists already or is bad only sends the range down the other way.
//! - [`stage`]: into an all-`text` temporary table, one row per record with its ordinal
//!   `n` and its line, for the upsert ([`super::upsert`]). Binary `COPY` of text columns
//!   needs no escaping (a value is its length and its bytes), so the staged text is
//!   exactly the field's.
//!
//! Either way the COPY data is sent every [`SEND_BYTES`], so memory stays at the range plus
//! one buffer.

use sqlx::PgConnection;

use super::csv::Field;
use super::rejects::Reject;
use super::rows::Rows;
use super::target::TableColumn;
use jobs_core::dataset::quote_ident;

/// The staging table (temporary, dropped at the end of the item's transaction).
pub const STAGE: &str = "pg_temp.offload_import_stage";

/// COPY data is sent in pieces of about this size.
const SEND_BYTES: usize = 1 << 20;

/// What a COPY took.
#[derive(Debug, Default)]
pub struct Sent {
    /// Records read (blank lines aside).
    pub records: u64,
    /// Rows copied: into the staging table numbered `0..rows`, or inserted into the target.
    pub rows: u32,
    /// Records refused before any COPY.
    pub rejects: Vec<Reject>,
}

/// `CREATE TEMP TABLE` of the staging table for `columns` (`c0`, `c1`, … as text).
pub fn create_sql(columns: usize) -> String {
    let cols: String = (0..columns).map(|i| format!(", c{i} text")).collect();
    format!(
        "CREATE TEMP TABLE offload_import_stage (n int4 NOT NULL, line int8 NOT NULL, \
         bad boolean NOT NULL DEFAULT false{cols}) ON COMMIT DROP"
    )
}

/// Copies `rows` into the staging table (created already on `conn`).
pub async fn stage(
    conn: &mut PgConnection,
    rows: Rows<'_>,
    columns: usize,
) -> Result<Sent, sqlx::Error> {
    let names: String = (0..columns).map(|i| format!(", c{i}")).collect();
    let sql = format!("COPY {STAGE} (n, line{names}) FROM STDIN (FORMAT binary)");
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&0i32.to_be_bytes());
    header.extend_from_slice(&0i32.to_be_bytes());
    send(conn, &sql, rows, header, &(-1i16).to_be_bytes(), tuple).await
}

/// Copies `rows` straight into `table`'s `columns`. An error may come from any row: run it
/// under a savepoint.
pub async fn copy_into(
    conn: &mut PgConnection,
    table_sql: &str,
    columns: &[&TableColumn],
    rows: Rows<'_>,
) -> Result<Sent, sqlx::Error> {
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "COPY {table_sql} ({}) FROM STDIN (FORMAT csv)",
        names.join(", ")
    );
    send(conn, &sql, rows, Vec::new(), b"", |buf, _, _, fields| {
        csv_line(buf, fields)
    })
    .await
}

async fn send(
    conn: &mut PgConnection,
    sql: &str,
    rows: Rows<'_>,
    header: Vec<u8>,
    trailer: &[u8],
    encode: impl Fn(&mut Vec<u8>, i32, u64, &[Field<'_>]),
) -> Result<Sent, sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    let mut buf = header;
    buf.reserve(SEND_BYTES + 64 * 1024);
    let mut out = Sent::default();
    for (line, fields) in rows {
        out.records += 1;
        match fields {
            Ok(fields) => {
                encode(&mut buf, out.rows as i32, line, &fields);
                out.rows += 1;
            }
            Err(r) => out.rejects.push(r),
        }
        if buf.len() >= SEND_BYTES {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(trailer);
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await?;
    }
    copy.finish().await?;
    Ok(out)
}

/// One CSV line: every value quoted (`"` doubled), NULL as nothing.
fn csv_line(buf: &mut Vec<u8>, fields: &[Field<'_>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let Some(v) = f else { continue };
        buf.push(b'"');
        let mut rest: &[u8] = v;
        while let Some(q) = memchr::memchr(b'"', rest) {
            buf.extend_from_slice(&rest[..=q]);
            buf.push(b'"');
            rest = &rest[q + 1..];
        }
        buf.extend_from_slice(rest);
        buf.push(b'"');
    }
    buf.push(b'\n');
}

/// One binary COPY tuple: `n`, `line`, then the fields (`-1` length for NULL).
fn tuple(buf: &mut Vec<u8>, n: i32, line: u64, fields: &[Field<'_>]) {
    buf.extend_from_slice(&(fields.len() as i16 + 2).to_be_bytes());
    buf.extend_from_slice(&4i32.to_be_bytes());
    buf.extend_from_slice(&n.to_be_bytes());
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&(line as i64).to_be_bytes());
    for f in fields {
        match f {
            None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
                buf.extend_from_slice(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::csv::split_fields;

    #[test]
    fn csv_lines_read_back_as_the_same_fields() {
        let fields: Vec<Field<'_>> = vec![
            None,
            Some(Cow::Borrowed(b"")),
            Some(Cow::Borrowed(b"say \"hi\", twice\n\"")),
            Some(Cow::Borrowed(b"\\.")),
        ];
        let mut buf = Vec::new();
        csv_line(&mut buf, &fields);
        assert_eq!(buf.pop(), Some(b'\n'));
        assert_eq!(split_fields(&buf).unwrap(), fields);
    }
}
