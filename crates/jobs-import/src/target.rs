//! What the target table says about itself, read from the Postgres catalog: each column's
//! type, whether it is NOT NULL, has a default (or is an identity or generated column),
//! takes JSON text, and has an `=` operator of its own; and whether the dataset's key has a
//! unique, non-deferrable index of its own (`INSERT … ON CONFLICT (key)` needs one).

use sqlx::PgPool;

use jobs_core::dataset::Dataset;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    /// The full type (`numeric(12,2)`).
    pub type_sql: String,
    /// The type without its modifier (`numeric`): staged text is cast to this, and the
    /// insert applies the modifier, so a too-long `varchar(n)` value is an error as it is
    /// for `COPY` (an explicit cast would silently truncate it).
    pub base_type_sql: String,
    pub not_null: bool,
    /// A default, an identity or a generated column: it may be left out of a file.
    pub has_default: bool,
    pub generated: bool,
    /// `json` or `jsonb`: NDJSON values are taken as JSON text.
    pub json: bool,
    /// The type has an `=` of its own, so changes are detected with it; others (`json`,
    /// `varchar`, domains, arrays) are compared as text.
    pub has_equality: bool,
}

#[derive(Debug, Clone)]
pub struct Table {
    /// `r` (table), `p` (partitioned table), `v` (view), … from `pg_class.relkind`.
    pub relkind: String,
    pub columns: Vec<TableColumn>,
    pub key_is_unique: bool,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Why rows cannot be upserted into this table by the dataset's key, if they cannot.
    pub fn unfit(&self, ds: &Dataset) -> Option<String> {
        if !matches!(self.relkind.as_str(), "r" | "p") {
            return Some(format!(
                "dataset `{}` is not a table (a view cannot be imported into)",
                ds.name
            ));
        }
        if !self.key_is_unique {
            return Some(format!(
                "the key `{}` of dataset `{}` has no unique index of its own; an import \
                 upserts by key and needs one",
                ds.key.name, ds.name
            ));
        }
        None
    }

    /// NOT NULL columns without a default that `columns` leaves out: no row could be
    /// inserted.
    pub fn required_missing(&self, columns: &[String]) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.not_null && !c.has_default && !columns.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// Reads the facts of the dataset's table.
pub async fn inspect(pool: &PgPool, ds: &Dataset) -> Result<Table, sqlx::Error> {
    let relkind: Option<String> =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
            .bind(&ds.table_sql)
            .fetch_optional(pool)
            .await?;
    type Row = (String, String, String, bool, bool, bool, bool, bool);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                format_type(a.atttypid, NULL), a.attnotnull,
                a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
                a.attgenerated <> '',
                t.typname IN ('json', 'jsonb'),
                EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '='
                        AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(&ds.table_sql)
    .fetch_all(pool)
    .await?;
    let key_is_unique: bool = sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM pg_index i JOIN pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate
               AND i.indnkeyatts = 1
               AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = $2)",
    )
    .bind(&ds.table_sql)
    .bind(&ds.key.name)
    .fetch_one(pool)
    .await?;
    Ok(Table {
        relkind: relkind.unwrap_or_default(),
        columns: rows
            .into_iter()
            .map(
                |(name, type_sql, base_type_sql, not_null, has_default, generated, json, eq)| {
                    TableColumn {
                        name,
                        type_sql,
                        base_type_sql,
                        not_null,
                        has_default,
                        generated,
                        json,
                        has_equality: eq,
                    }
                },
            )
            .collect(),
        key_is_unique,
    })
}
