//! The upsert of one item's staged rows, and the slow path that isolates rows at fault.
//!
//! One statement loads every staged row: `INSERT … SELECT CAST(c AS type) … ON CONFLICT
//! (key) DO UPDATE … WHERE (row) IS DISTINCT FROM (excluded row)` — a row already as the
//! file has it is not written again, and `RETURNING (xmax = 0)` tells inserts from updates.
//! Staged text is cast to the column's type without its modifier; the insert applies the
//! modifier, so a too-long `varchar(n)` value is an error, as with `COPY`. Types without an
//! `=` of their own (`json`) are compared as text.
//!
//! When that statement fails because of some row (a value that does not cast; a NOT NULL,
//! CHECK, foreign key or unique violation; a key repeated in the range; a trigger's error),
//! the transaction is rolled back and the rows staged again in a new one
//! ([`super::load`]); keys repeated within the range are rejected (the first occurrence
//! loads), then values that do not cast to their column's type (one statement a column),
//! and the rest is loaded by bisection: halves probed under savepoints (always
//! rolled back, so the item's lock count stays the same whatever it rejects) until each
//! failing part is one row, which is rejected with Postgres's own message and the column at
//! fault. A clean range costs one statement; `k` bad rows about `2·k·log2(rows/k)`.
//!
//! A row of the target that another item of the same job wrote (its `xmin` is that item's
//! transaction, recorded in `offload.import_commits`) is left as it is when this item's
//! row would change it, and this item's row is rejected: the key repeats in another part
//! of the file with other values. (A repeat with the same values changes nothing and is
//! counted unchanged.)

use sqlx::postgres::{PgDatabaseError, PgRow};
use sqlx::{PgConnection, Row as _};

use super::rejects::{Reject, clip};
use super::stage::STAGE;
use super::target::TableColumn;
use jobs_core::dataset::{Dataset, quote_ident};
use jobs_core::id::JobId;

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub inserted: u64,
    pub updated: u64,
}

/// The upsert of staged rows `n >= $1 AND n < $2` that are not marked bad, for item `seq`
/// of job `job_id`.
#[derive(Debug)]
pub struct Upsert {
    sql: String,
    job_id: JobId,
    seq: u32,
    /// Whether `sql` asks about other parts (it has columns to update): binds $3 and $4.
    asks_parts: bool,
    /// The staged key cast to its type, as text: how the upsert noted a repeat's key.
    staged_key_text: String,
}

/// The temporary table in which the upsert notes the keys of rows another item of the
/// job wrote (`offload.import_part_repeat`); created with the staging table.
pub const REPEATS_SQL: &str =
    "CREATE TEMP TABLE offload_import_repeats (k text NOT NULL) ON COMMIT DROP";

/// A failure caused by the data of some row, which the slow path can isolate: data
/// exceptions (22), integrity violations (23), a row affected twice (21000, a key repeated
/// within the statement), and errors raised by triggers (P0001).
pub fn row_level(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c == "21000" || c == "P0001")
}

/// Postgres's message for a row's failure (it names the constraint or the column), and
/// the column when Postgres names one. Never its DETAIL: that repeats whole rows (a CHECK's
/// "Failing row contains (…)", with columns the dataset does not expose) or values of other
/// rows (a unique violation's "Key (email)=(…) already exists", perhaps another tenant's),
/// and a rejects report goes to whoever submitted the file.
fn message(e: &sqlx::Error) -> (Option<String>, String) {
    match e.as_database_error() {
        Some(d) => {
            let pg = d.try_downcast_ref::<PgDatabaseError>();
            let column = pg.and_then(|p| p.column()).map(str::to_owned);
            (column, d.message().to_owned())
        }
        None => (None, e.to_string()),
    }
}

async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

impl Upsert {
    pub fn new(ds: &Dataset, columns: &[&TableColumn], job_id: JobId, seq: u32) -> Self {
        let target: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.base_type_sql == "text" {
                    format!("s.c{i}")
                } else {
                    format!("CAST(s.c{i} AS {})", c.base_type_sql)
                }
            })
            .collect();
        let others: Vec<&&TableColumn> = columns.iter().filter(|c| c.name != ds.key.name).collect();
        let conflict = if others.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let set: Vec<String> = others
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
                .collect();
            let side = |prefix: &str| -> Vec<String> {
                others
                    .iter()
                    .map(|c| {
                        let q = format!("{prefix}.{}", quote_ident(&c.name));
                        if c.has_equality {
                            q
                        } else {
                            format!("{q}::text")
                        }
                    })
                    .collect()
            };
            // A row another item of this job wrote stays as that item left it: the key
            // repeats in the file, and this row is rejected afterwards. (Asked only of rows
            // that would change, so an unchanged re-import pays nothing for it.)
            format!(
                "DO UPDATE SET {} WHERE CASE WHEN ({}) IS DISTINCT FROM ({})
                     THEN NOT offload.import_part_repeat($3, $4, t.xmin, EXCLUDED.{}::text)
                     ELSE false END",
                set.join(", "),
                side("t").join(", "),
                side("EXCLUDED").join(", "),
                quote_ident(&ds.key.name)
            )
        };
        let key_at = columns
            .iter()
            .position(|c| c.name == ds.key.name)
            .unwrap_or_default();
        let staged_key_text = format!(
            "({})::text",
            values.get(key_at).cloned().unwrap_or_default()
        );
        let sql = format!(
            "WITH up AS (
                 INSERT INTO {table} AS t ({target})
                 SELECT {values} FROM {STAGE} s WHERE s.n >= $1 AND s.n < $2 AND NOT s.bad
                 ON CONFLICT ({key}) {conflict}
                 RETURNING (xmax = 0) AS inserted)
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            table = ds.table_sql,
            target = target.join(", "),
            values = values.join(", "),
            key = ds.key.sql,
        );
        Self {
            sql,
            job_id,
            seq,
            asks_parts: !others.is_empty(),
            staged_key_text,
        }
    }

    fn query(
        &self,
        lo: u32,
        hi: u32,
    ) -> sqlx::query::QueryAs<'_, sqlx::Postgres, (i64, i64), sqlx::postgres::PgArguments> {
        let query = sqlx::query_as(&self.sql).bind(lo as i32).bind(hi as i32);
        if self.asks_parts {
            query.bind(self.job_id.as_uuid()).bind(self.seq as i32)
        } else {
            query
        }
    }

    /// Upserts every staged row in one statement, without a savepoint: `Ok(Err(e))` when a
    /// row was at fault (the transaction is then aborted), `Err` for anything else.
    pub async fn whole(
        &self,
        conn: &mut PgConnection,
        staged: u32,
    ) -> Result<Result<Counts, sqlx::Error>, sqlx::Error> {
        self.range(conn, 0, staged).await
    }

    /// Upserts rows `lo..hi` in one statement: `Ok(Err(e))` when a row was at fault.
    async fn range(
        &self,
        conn: &mut PgConnection,
        lo: u32,
        hi: u32,
    ) -> Result<Result<Counts, sqlx::Error>, sqlx::Error> {
        match self.query(lo, hi).fetch_one(&mut *conn).await {
            Ok((ins, upd)) => Ok(Ok(Counts {
                inserted: ins as u64,
                updated: upd as u64,
            })),
            Err(e) if row_level(&e) => Ok(Err(e)),
            Err(e) => Err(e),
        }
    }

    /// Whether rows `lo..hi` load, tried under a savepoint that is always rolled back:
    /// nothing stays, and the subtransaction's locks (its transaction id's among them) go
    /// with it. `Ok(Err(e))` when a row was at fault.
    async fn probe(
        &self,
        conn: &mut PgConnection,
        lo: u32,
        hi: u32,
    ) -> Result<Result<(), sqlx::Error>, sqlx::Error> {
        exec(conn, "SAVEPOINT offload_probe").await?;
        let tried = self.range(conn, lo, hi).await?;
        undo_savepoint(conn, UNDO_PROBE).await?;
        Ok(tried.map(|_| ()))
    }

    /// Loads rows `0..staged`, some of which are at fault ([`Upsert::whole`] failed):
    /// rejects those into `rejects`, loads the rest.
    ///
    /// Ranges are probed under a savepoint that is rolled back whatever the outcome; a
    /// range that loads is then loaded again in the item's own transaction, where it is
    /// bound to succeed (nothing changed in between but what this transaction did). So no
    /// subtransaction that wrote survives: the item holds one transaction-id lock however
    /// many rows it rejects, and its rows carry the transaction id its claim recorded.
    /// (Released savepoints would hand their locks to the transaction, one per range that
    /// loaded, until commit: thousands for a file with thousands of bad rows, where
    /// Postgres's shared lock table holds about 6,400 for the whole server.) Good rows are
    /// written twice, once rolled back; bad rows cost the bisection's probes.
    pub async fn isolate(
        &self,
        conn: &mut PgConnection,
        staged: u32,
        columns: &[&TableColumn],
        key: usize,
        rejects: &mut Vec<Reject>,
    ) -> Result<Counts, sqlx::Error> {
        exec(conn, &format!("CREATE INDEX ON {STAGE} (n)")).await?;
        exec(conn, &format!("ANALYZE {STAGE}")).await?;
        reject_repeated_keys(conn, columns, key, rejects).await?;
        reject_cast_failures(conn, columns, rejects).await?;
        let mut counts = Counts::default();
        // Ranges still to load, the next one last: loads go in file order.
        let mut todo = vec![(0, staged)];
        while let Some((lo, hi)) = todo.pop() {
            match self.probe(conn, lo, hi).await? {
                Ok(()) => {
                    // A failure now (a concurrent transaction committed a conflicting row
                    // since the probe) aborts the transaction: the item is tried again.
                    let c = self.range(conn, lo, hi).await??;
                    counts.inserted += c.inserted;
                    counts.updated += c.updated;
                }
                Err(e) if hi - lo <= 1 => {
                    rejects.push(diagnose(conn, columns, lo, &e).await?);
                    sqlx::query(&format!("UPDATE {STAGE} SET bad = true WHERE n = $1"))
                        .bind(lo as i32)
                        .execute(&mut *conn)
                        .await?;
                }
                Err(_) => {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
            }
        }
        Ok(counts)
    }
}

/// Rolls back to a savepoint and releases it, in one round trip. (`ROLLBACK TO` alone
/// keeps the savepoint, so the next `SAVEPOINT` would nest inside it.)
async fn undo_savepoint(conn: &mut PgConnection, undo: &'static str) -> Result<(), sqlx::Error> {
    // A `&str` without arguments goes by the simple query protocol, which takes both.
    sqlx::Executor::execute(conn, undo).await.map(|_| ())
}

const UNDO_PROBE: &str = "ROLLBACK TO SAVEPOINT offload_probe; RELEASE SAVEPOINT offload_probe";
const UNDO_CAST: &str = "ROLLBACK TO SAVEPOINT offload_cast; RELEASE SAVEPOINT offload_cast";

impl Upsert {
    /// After the upsert: rejects the staged rows whose key's target row another item of
    /// this job wrote with other values — the upsert left those rows alone and noted their
    /// keys. (Every staged row left is one that cast, so its key's text is the same as the
    /// noted one's.)
    pub async fn reject_keys_of_other_parts(
        &self,
        conn: &mut PgConnection,
        columns: &[&TableColumn],
        key: usize,
        rejects: &mut Vec<Reject>,
    ) -> Result<(), sqlx::Error> {
        let noted: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM offload_import_repeats)")
                .fetch_one(&mut *conn)
                .await?;
        if !noted {
            return Ok(());
        }
        let found: Vec<(i64, Option<String>)> = sqlx::query_as(&format!(
            "UPDATE {STAGE} s SET bad = true
             FROM (SELECT DISTINCT k FROM offload_import_repeats) r
             WHERE NOT s.bad AND {} = r.k
             RETURNING s.line, s.c{key}",
            self.staged_key_text,
        ))
        .fetch_all(&mut *conn)
        .await?;
        for (line, value) in found {
            rejects.push(Reject {
                line: line as u64,
                column: columns[key].name.clone(),
                value: value.map(|v| clip(v.as_bytes())),
                reason: "the key was loaded from another line of this file (by the part that \
                         committed first); a key may appear once per file"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

/// Marks every staged row with a value that does not cast to its column's type bad, and
/// rejects it naming its first such column: one statement per typed column
/// (`offload.import_cast_failures`), however many rows are bad, so that the bisection is
/// left with rows at fault for other reasons (constraints, triggers), which are rare.
async fn reject_cast_failures(
    conn: &mut PgConnection,
    columns: &[&TableColumn],
    rejects: &mut Vec<Reject>,
) -> Result<(), sqlx::Error> {
    for (i, c) in columns.iter().enumerate() {
        if c.base_type_sql == "text" {
            continue;
        }
        let failed: Vec<(i32, i64, String, String)> = sqlx::query_as(
            "SELECT n, line, value, message
             FROM offload.import_cast_failures($1::regclass, $2, $3)",
        )
        .bind(STAGE)
        .bind(format!("c{i}"))
        .bind(&c.type_sql)
        .fetch_all(&mut *conn)
        .await?;
        if failed.is_empty() {
            continue;
        }
        let bad: Vec<i32> = failed.iter().map(|f| f.0).collect();
        sqlx::query(&format!("UPDATE {STAGE} SET bad = true WHERE n = ANY($1)"))
            .bind(&bad)
            .execute(&mut *conn)
            .await?;
        rejects.extend(failed.into_iter().map(|(_, line, value, reason)| Reject {
            line: line as u64,
            column: c.name.clone(),
            value: Some(clip(value.as_bytes())),
            reason,
        }));
    }
    Ok(())
}

/// Marks every staged row whose key repeats an earlier row's (as the key's type compares
/// them, or as text when some key does not cast) bad, and rejects it.
async fn reject_repeated_keys(
    conn: &mut PgConnection,
    columns: &[&TableColumn],
    key: usize,
    rejects: &mut Vec<Reject>,
) -> Result<(), sqlx::Error> {
    let by = |expr: String| {
        format!(
            "UPDATE {STAGE} s SET bad = true
             FROM (SELECT n, line, first_value(line) OVER (PARTITION BY {expr} ORDER BY n) AS first
                   FROM {STAGE} WHERE NOT bad) d
             WHERE s.n = d.n AND d.line <> d.first
             RETURNING s.line, s.c{key}, d.first"
        )
    };
    let typed = by(format!("CAST(c{key} AS {})", columns[key].base_type_sql));
    exec(conn, "SAVEPOINT offload_keys").await?;
    let found: Vec<(i64, Option<String>, i64)> =
        match sqlx::query_as(&typed).fetch_all(&mut *conn).await {
            Ok(rows) => rows,
            Err(e) if row_level(&e) => {
                exec(conn, "ROLLBACK TO SAVEPOINT offload_keys").await?;
                sqlx::query_as(&by(format!("c{key}")))
                    .fetch_all(&mut *conn)
                    .await?
            }
            Err(e) => return Err(e),
        };
    exec(conn, "RELEASE SAVEPOINT offload_keys").await?;
    for (line, value, first) in found {
        rejects.push(Reject {
            line: line as u64,
            column: columns[key].name.clone(),
            value: value.map(|v| clip(v.as_bytes())),
            reason: format!(
                "the key repeats line {first}'s; a key may appear once per file (line {first} is loaded)"
            ),
        });
    }
    Ok(())
}

/// The reject of the single staged row `n`, which failed with `e`: the column whose value
/// does not cast to its type when there is one, else the column Postgres names (NOT NULL),
/// else the whole row, with Postgres's message.
async fn diagnose(
    conn: &mut PgConnection,
    columns: &[&TableColumn],
    n: u32,
    e: &sqlx::Error,
) -> Result<Reject, sqlx::Error> {
    let cols: String = (0..columns.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row: PgRow = sqlx::query(&format!(
        "SELECT line, ARRAY[{cols}]::text[] AS vals FROM {STAGE} WHERE n = $1"
    ))
    .bind(n as i32)
    .fetch_one(&mut *conn)
    .await?;
    let line: i64 = row.try_get("line")?;
    let values: Vec<Option<String>> = row.try_get("vals")?;
    let is_data_error = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22"));
    if is_data_error {
        for (i, c) in columns.iter().enumerate() {
            let Some(v) = &values[i] else { continue };
            if c.base_type_sql == "text" {
                continue;
            }
            exec(conn, "SAVEPOINT offload_cast").await?;
            let cast = sqlx::query(&format!("SELECT CAST($1 AS {})", c.type_sql))
                .bind(v)
                .execute(&mut *conn)
                .await;
            match cast {
                Ok(_) => exec(conn, "RELEASE SAVEPOINT offload_cast").await?,
                Err(ce) if row_level(&ce) => {
                    undo_savepoint(conn, UNDO_CAST).await?;
                    return Ok(Reject {
                        line: line as u64,
                        column: c.name.clone(),
                        value: Some(clip(v.as_bytes())),
                        reason: message(&ce).1,
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }
    let (column, reason) = message(e);
    let at = column
        .as_deref()
        .and_then(|name| columns.iter().position(|c| c.name == name));
    Ok(Reject {
        line: line as u64,
        column: column.unwrap_or_default(),
        value: at.and_then(|i| values[i].as_deref().map(|v| clip(v.as_bytes()))),
        reason,
    })
}
