//! The SQL of an export. Identifiers come from the resolved dataset (configured, quoted);
//! values never appear in SQL text. `COPY (query) TO STDOUT` cannot take bind parameters,
//! so values travel as transaction-local settings instead: [`Bound::apply`] binds them with
//! `set_config('offload.pN', $value, true)` and the query reads them back with
//! `current_setting('offload.pN')`, cast to the column's type. `current_setting` is stable,
//! so Postgres evaluates it once per scan and key-range conditions still use the key's
//! index.

use sqlx::PgConnection;

use super::{ExportFormat, ExportSpec, FilterOp, KeyRange};
use jobs_core::dataset::Dataset;

/// A statement and the values it reads through `current_setting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub sql: String,
    pub values: Vec<String>,
}

impl Bound {
    /// Sets the values for the rest of the current transaction. Must run inside a
    /// transaction (`is_local`), so they never leak to another use of the connection.
    pub async fn apply(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.values.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = (0..self.values.len())
            .map(|i| format!("offload.p{i}"))
            .collect();
        sqlx::query(
            "SELECT count(set_config(n, v, true)) FROM unnest($1::text[], $2::text[]) AS t(n, v)",
        )
        .bind(&names)
        .bind(&self.values)
        .execute(conn)
        .await?;
        Ok(())
    }
}

struct Conditions<'a> {
    ds: &'a Dataset,
    values: Vec<String>,
    conds: Vec<String>,
}

impl<'a> Conditions<'a> {
    fn new(ds: &'a Dataset) -> Self {
        Self {
            ds,
            values: Vec::new(),
            conds: Vec::new(),
        }
    }

    /// Registers a value; returns the SQL expression reading it, cast to `type_sql`.
    fn value(&mut self, v: &str, type_sql: &str) -> String {
        self.values.push(v.to_owned());
        format!(
            "CAST(current_setting('offload.p{}') AS {type_sql})",
            self.values.len() - 1
        )
    }

    fn filters(&mut self, spec: &ExportSpec) {
        for f in &spec.filter {
            // Columns were checked against the dataset when the job was submitted.
            let Some(col) = self.ds.column(&f.column).cloned() else {
                continue;
            };
            match &f.op {
                FilterOp::Eq { value } => {
                    let v = self.value(value, &col.type_sql);
                    self.conds.push(format!("{} = {v}", col.sql));
                }
                FilterOp::In { values } => {
                    let json = serde_json::to_string(values).unwrap_or_else(|_| "[]".into());
                    self.values.push(json);
                    let i = self.values.len() - 1;
                    self.conds.push(format!(
                        "{} = ANY(ARRAY(SELECT CAST(x AS {}) FROM \
                         jsonb_array_elements_text(current_setting('offload.p{i}')::jsonb) AS x))",
                        col.sql, col.type_sql
                    ));
                }
                FilterOp::Range { gte, lt } => {
                    if let Some(g) = gte {
                        let v = self.value(g, &col.type_sql);
                        self.conds.push(format!("{} >= {v}", col.sql));
                    }
                    if let Some(l) = lt {
                        let v = self.value(l, &col.type_sql);
                        self.conds.push(format!("{} < {v}", col.sql));
                    }
                }
            }
        }
    }

    fn range(&mut self, range: &KeyRange) {
        let key = self.ds.key.clone();
        if let Some(after) = &range.after {
            let v = self.value(after, &key.type_sql);
            self.conds.push(format!("{} > {v}", key.sql));
        }
        if let Some(upto) = &range.upto {
            let v = self.value(upto, &key.type_sql);
            self.conds.push(format!("{} <= {v}", key.sql));
        }
    }

    fn where_sql(&self) -> String {
        if self.conds.is_empty() {
            "TRUE".into()
        } else {
            self.conds.join(" AND ")
        }
    }
}

/// Every `chunk_rows`-th key of the filtered rows, in key order: the boundaries of a plan
/// whose parts hold `chunk_rows` rows each, however sparse or skewed the keys are. Reads
/// only the key (an index-only scan where the visibility map allows). `$1` is the chunk
/// size.
pub fn boundaries(ds: &Dataset, spec: &ExportSpec) -> Bound {
    let mut c = Conditions::new(ds);
    c.filters(spec);
    let sql = format!(
        "SELECT k FROM (
             SELECT {key}::text AS k, row_number() OVER (ORDER BY {key}) AS rn
             FROM {table} WHERE {cond}
         ) s WHERE rn % $1 = 0 ORDER BY rn",
        key = ds.key.sql,
        table = ds.table_sql,
        cond = c.where_sql(),
    );
    Bound {
        sql,
        values: c.values,
    }
}

/// The keys of a random sample of the filtered rows, in key order: `TABLESAMPLE SYSTEM`
/// reads `$1` percent of the table's pages (`REPEATABLE`, so a re-plan samples the same
/// pages). For large tables, where numbering every key costs seconds.
pub fn sampled_keys(ds: &Dataset, spec: &ExportSpec) -> Bound {
    let mut c = Conditions::new(ds);
    c.filters(spec);
    let sql = format!(
        // The alias matters: `ORDER BY "id"` would otherwise sort by the text output column
        // of the same name, not by the key.
        "SELECT {key}::text AS sampled_key FROM {table} TABLESAMPLE SYSTEM ($1) REPEATABLE (7)
         WHERE {cond} ORDER BY {key}",
        key = ds.key.sql,
        table = ds.table_sql,
        cond = c.where_sql(),
    );
    Bound {
        sql,
        values: c.values,
    }
}

/// Whether a column of type `type_sql` (as Postgres prints it) holds text a spreadsheet
/// could read as a formula.
fn is_text(type_sql: &str) -> bool {
    matches!(type_sql, "text" | "citext" | "name")
        || type_sql.starts_with("character")
        || type_sql.starts_with("varchar")
}

/// The `COPY … TO STDOUT` of one part, in key order. CSV parts are exactly what
/// `COPY (query) TO STDOUT WITH (FORMAT csv)` prints, with the header on the first part
/// only, so the result is the parts concatenated. NDJSON is one `row_to_json` document per
/// line: printed through CSV mode with delimiter and quote characters (0x01, 0x02) that JSON
/// text never contains raw, so the documents come out unquoted and unescaped.
pub fn copy_part(ds: &Dataset, spec: &ExportSpec, range: &KeyRange, header: bool) -> Bound {
    let mut c = Conditions::new(ds);
    c.range(range);
    c.filters(spec);
    let neutralize = spec.format == ExportFormat::Csv && spec.neutralize_formulas;
    let cols: Vec<String> = spec
        .columns
        .iter()
        .filter_map(|name| ds.column(name))
        .map(|c| {
            if neutralize && is_text(&c.type_sql) {
                // A leading ' makes a spreadsheet show the cell as text; the column keeps
                // its name (the header).
                format!(
                    "CASE WHEN {col} ~ '^[-=+@\t\r]' THEN '''' || {col} ELSE {col} END AS {col}",
                    col = c.sql
                )
            } else {
                c.sql.clone()
            }
        })
        .collect();
    let select = format!(
        "SELECT {cols} FROM {table} WHERE {cond} ORDER BY {key}",
        cols = cols.join(", "),
        table = ds.table_sql,
        cond = c.where_sql(),
        key = ds.key.sql,
    );
    let sql = match spec.format {
        ExportFormat::Csv => format!(
            "COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER {})",
            if header { "true" } else { "false" }
        ),
        ExportFormat::Ndjson => format!(
            "COPY (SELECT row_to_json(t)::text FROM ({select}) t) \
             TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
        ),
    };
    Bound {
        sql,
        values: c.values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Filter, FilterOp};
    use jobs_core::dataset::Column;

    fn ds() -> Dataset {
        let col = Column::new;
        Dataset {
            name: "e".into(),
            table_sql: "\"s\".\"e\"".into(),
            key: col("id", "bigint"),
            columns: vec![col("id", "bigint"), col("status", "text")],
            filterable: vec!["status".into()],
            neutralize_formulas: false,
        }
    }

    #[test]
    fn values_never_reach_the_sql_text() {
        let spec = ExportSpec {
            dataset: "e".into(),
            format: ExportFormat::Csv,
            columns: vec!["status".into(), "id".into()],
            filter: vec![Filter {
                column: "status".into(),
                op: FilterOp::In {
                    values: vec!["x'); DROP TABLE e; --".into()],
                },
            }],
            chunk_rows: 10,
            neutralize_formulas: false,
        };
        let range = KeyRange {
            after: Some("100".into()),
            upto: None,
        };
        let b = copy_part(&ds(), &spec, &range, true);
        assert!(!b.sql.contains("DROP"), "{}", b.sql);
        assert!(!b.sql.contains("100"), "{}", b.sql);
        assert_eq!(b.values, ["100", r#"["x'); DROP TABLE e; --"]"#]);
        assert!(b.sql.starts_with("COPY (SELECT \"status\", \"id\" FROM \"s\".\"e\" WHERE \"id\" > CAST(current_setting('offload.p0') AS bigint) AND \"status\" = ANY("), "{}", b.sql);
        assert!(
            b.sql
                .ends_with("ORDER BY \"id\") TO STDOUT WITH (FORMAT csv, HEADER true)"),
            "{}",
            b.sql
        );
    }
}
