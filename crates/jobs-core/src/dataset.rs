//! The dataset catalog: configured datasets resolved against the database.
//!
//! A request names a dataset and columns; SQL identifiers come only from the configuration
//! (validated at start to letters, digits and `_`) and are always double-quoted when spliced
//! into SQL. Column types are read from the table itself the first time a dataset is used,
//! so that filter values can be cast to them and checked before a job is accepted. A dataset
//! whose table does not exist (yet) is reported as unavailable, not as a start-up failure.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;

use crate::config::{DatasetConfig, Datasets};

/// A column of a resolved dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The name, double-quoted for SQL.
    pub sql: String,
    /// The column's type as Postgres prints it (`bigint`, `numeric(12,2)`, …), from the
    /// catalog, used in casts.
    pub type_sql: String,
}

impl Column {
    /// A column named `name` (quoted for SQL here) of type `type_sql`.
    pub fn new(name: &str, type_sql: &str) -> Self {
        Self {
            name: name.to_owned(),
            sql: quote_ident(name),
            type_sql: type_sql.to_owned(),
        }
    }
}

/// A dataset whose table and columns exist.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// The table, quoted (and schema-qualified when configured so) for SQL.
    pub table_sql: String,
    pub key: Column,
    /// Exportable columns, in the configured order.
    pub columns: Vec<Column>,
    pub filterable: Vec<String>,
    /// CSV exports neutralise spreadsheet formulas unless a request says otherwise.
    pub neutralize_formulas: bool,
}

impl Dataset {
    pub fn column(&self, name: &str) -> Option<&Column> {
        if name == self.key.name {
            return Some(&self.key);
        }
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_filterable(&self, name: &str) -> bool {
        self.filterable.iter().any(|f| f == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown dataset `{0}`")]
    Unknown(String),
    #[error("dataset `{dataset}` is not available: {problem}")]
    Unavailable { dataset: String, problem: String },
    #[error("reading the dataset catalog failed: {0}")]
    Db(#[from] sqlx::Error),
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Configured datasets, resolved lazily and cached. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Catalog {
    pool: PgPool,
    configured: Datasets,
    resolved: RwLock<HashMap<String, Arc<Dataset>>>,
}

impl Catalog {
    pub fn new(pool: PgPool, configured: Datasets) -> Self {
        Self {
            pool,
            configured,
            resolved: RwLock::new(HashMap::new()),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.configured.keys().map(String::as_str)
    }

    pub async fn get(&self, name: &str) -> Result<Arc<Dataset>, CatalogError> {
        if let Some(d) = self
            .resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(d.clone());
        }
        let cfg = self
            .configured
            .get(name)
            .ok_or_else(|| CatalogError::Unknown(name.to_owned()))?;
        let dataset = Arc::new(resolve(&self.pool, name, cfg).await?);
        self.resolved
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), dataset.clone());
        Ok(dataset)
    }
}

async fn resolve(pool: &PgPool, name: &str, cfg: &DatasetConfig) -> Result<Dataset, CatalogError> {
    let unavailable = |problem: String| CatalogError::Unavailable {
        dataset: name.to_owned(),
        problem,
    };
    let table_sql = quote_table(&cfg.table);
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM pg_attribute a
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&table_sql)
    .fetch_all(pool)
    .await?;
    if types.is_empty() {
        return Err(unavailable(format!("table {} does not exist", cfg.table)));
    }
    let types: HashMap<String, String> = types.into_iter().collect();
    let column = |c: &str| -> Result<Column, CatalogError> {
        let type_sql = types
            .get(c)
            .ok_or_else(|| unavailable(format!("table {} has no column `{c}`", cfg.table)))?;
        Ok(Column::new(c, type_sql))
    };
    Ok(Dataset {
        name: name.to_owned(),
        table_sql,
        key: column(&cfg.key)?,
        columns: cfg
            .columns
            .iter()
            .map(|c| column(c))
            .collect::<Result<_, _>>()?,
        filterable: cfg.filterable.clone(),
        neutralize_formulas: cfg.neutralize_formulas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("amount"), "\"amount\"");
        assert_eq!(
            quote_table("offload_demo.expenses"),
            "\"offload_demo\".\"expenses\""
        );
    }
}
