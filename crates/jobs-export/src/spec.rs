//! The export request: parsed from JSON with errors that name the field at fault, checked
//! against the dataset catalog, and stored (normalized) as the job's parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use jobs_core::config::ExportConfig;
use jobs_core::dataset::Dataset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Ndjson,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// One condition on a filterable column. Values are kept as text and cast to the column's
/// type in SQL (after being checked against it when the job is submitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub column: String,
    #[serde(flatten)]
    pub op: FilterOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum FilterOp {
    Eq {
        value: String,
    },
    In {
        values: Vec<String>,
    },
    Range {
        gte: Option<String>,
        lt: Option<String>,
    },
}

/// A validated export, as stored in the job's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub dataset: String,
    pub format: ExportFormat,
    pub columns: Vec<String>,
    #[serde(default)]
    pub filter: Vec<Filter>,
    pub chunk_rows: u32,
    /// CSV only: text cells that a spreadsheet would run as a formula get a leading `'`.
    /// Absent (false) in specs stored before the option existed, and then not written, so
    /// such a spec's stored form is unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub neutralize_formulas: bool,
}

pub use jobs_core::invalid::{Invalid, invalid};

/// Most values an `in` filter may list.
pub const MAX_IN_VALUES: usize = 1000;

fn scalar(v: &Value, field: &str) -> Result<String, Invalid> {
    match v {
        Value::String(s) if s.len() <= 1024 => Ok(s.clone()),
        Value::String(_) => Err(invalid(field, "must be at most 1024 characters")),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(invalid(field, "null is not a filter value")),
        Value::Array(_) => Err(invalid(field, "a list needs {\"in\": [...]}")),
        Value::Object(_) => Err(invalid(field, "must be a string, number or boolean")),
    }
}

/// The JSON Schema of an export request (the object under `export`), for the API's OpenAPI
/// document. [`ExportSpec::parse`] is what decides; this describes it.
pub fn request_schema() -> Value {
    let scalar = serde_json::json!({
        "type": ["string", "number", "boolean"],
        "description": "Compared as the column's type (strings of at most 1024 characters)."
    });
    serde_json::json!({
        "type": "object",
        "description": "Rows of a configured dataset, filtered, as one file.",
        "examples": [
            {"dataset": "expenses", "format": "csv", "filter": {"status": "approved"}},
            {"dataset": "expenses", "format": "ndjson", "columns": ["id", "amount"], "filter": {"amount": {"gte": 100, "lt": 500}}}
        ],
        "required": ["dataset"],
        "additionalProperties": false,
        "properties": {
            "dataset": {"type": "string", "minLength": 1, "description": "A dataset of the catalog."},
            "format": {"type": "string", "enum": ["csv", "ndjson"], "default": "csv"},
            "columns": {
                "type": ["array", "null"],
                "minItems": 1,
                "uniqueItems": true,
                "items": {"type": "string"},
                "description": "Columns in file order; all of the dataset's when absent."
            },
            "filter": {
                "type": ["object", "null"],
                "description": "Conditions on filterable columns, by column name: a value (equals), or one of {\"eq\": v}, {\"in\": [v, ...]}, {\"gte\": a, \"lt\": b}.",
                "additionalProperties": {
                    "oneOf": [
                        scalar,
                        {
                            "type": "object",
                            "additionalProperties": false,
                            "minProperties": 1,
                            "properties": {
                                "eq": scalar,
                                "in": {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES, "items": scalar},
                                "gte": scalar,
                                "lt": scalar
                            }
                        }
                    ]
                }
            },
            "neutralize_formulas": {
                "type": ["boolean", "null"],
                "description": "CSV only: a text cell beginning with =, +, -, @, a tab or a carriage return gets a leading ' so a spreadsheet shows it instead of running it. The default is the dataset's (configuration: neutralize_formulas), normally false: the file is then byte for byte what COPY prints."
            },
            "chunk_rows": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Rows per work item, within the deployment's export.min_chunk_rows..export.max_chunk_rows."
            }
        }
    })
}

impl ExportSpec {
    /// The dataset named by an export request (`export.dataset`), before anything else is
    /// checked: the caller resolves it in the catalog and calls [`ExportSpec::parse`].
    pub fn dataset_name(export: &Value) -> Result<&str, Invalid> {
        match export.get("dataset") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(invalid("export.dataset", "must be a non-empty string")),
            None => Err(invalid("export.dataset", "is required")),
        }
    }

    /// Parses and checks the `export` object of a request against its dataset.
    pub fn parse(export: &Value, ds: &Dataset, cfg: &ExportConfig) -> Result<Self, Invalid> {
        let obj = export
            .as_object()
            .ok_or_else(|| invalid("export", "must be an object"))?;
        for key in obj.keys() {
            if ![
                "dataset",
                "format",
                "columns",
                "filter",
                "chunk_rows",
                "neutralize_formulas",
            ]
            .contains(&key.as_str())
            {
                return Err(invalid(format!("export.{key}"), "is not a known field"));
            }
        }
        let format = match obj.get("format") {
            None => ExportFormat::Csv,
            Some(Value::String(s)) if s == "csv" => ExportFormat::Csv,
            Some(Value::String(s)) if s == "ndjson" => ExportFormat::Ndjson,
            Some(_) => return Err(invalid("export.format", "must be \"csv\" or \"ndjson\"")),
        };
        let columns = match obj.get("columns") {
            None | Some(Value::Null) => ds.columns.iter().map(|c| c.name.clone()).collect(),
            Some(Value::Array(cols)) if !cols.is_empty() => {
                let mut out = Vec::with_capacity(cols.len());
                for (i, c) in cols.iter().enumerate() {
                    let field = format!("export.columns[{i}]");
                    let name = c
                        .as_str()
                        .ok_or_else(|| invalid(&field, "must be a string"))?;
                    if !ds.columns.iter().any(|col| col.name == name) {
                        return Err(invalid(
                            field,
                            format!("unknown column `{name}` in dataset `{}`", ds.name),
                        ));
                    }
                    if out.iter().any(|o| o == name) {
                        return Err(invalid(field, format!("column `{name}` is listed twice")));
                    }
                    out.push(name.to_owned());
                }
                out
            }
            Some(_) => {
                return Err(invalid(
                    "export.columns",
                    "must be a non-empty list of column names",
                ));
            }
        };
        let filter = match obj.get("filter") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => parse_filter(map, ds)?,
            Some(_) => {
                return Err(invalid(
                    "export.filter",
                    "must be an object of column: condition",
                ));
            }
        };
        let chunk_rows = match obj.get("chunk_rows") {
            None | Some(Value::Null) => cfg.default_chunk_rows,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (cfg.min_chunk_rows..=cfg.max_chunk_rows).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "export.chunk_rows",
                        format!(
                            "must be an integer from {} to {}",
                            cfg.min_chunk_rows, cfg.max_chunk_rows
                        ),
                    )
                })?,
        };
        let neutralize_formulas = match obj.get("neutralize_formulas") {
            None | Some(Value::Null) => format == ExportFormat::Csv && ds.neutralize_formulas,
            Some(Value::Bool(true)) if format != ExportFormat::Csv => {
                return Err(invalid(
                    "export.neutralize_formulas",
                    "applies to CSV only: an NDJSON file is not opened as a spreadsheet",
                ));
            }
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(
                    "export.neutralize_formulas",
                    "must be true or false",
                ));
            }
        };
        Ok(Self {
            dataset: ds.name.clone(),
            format,
            columns,
            filter,
            chunk_rows,
            neutralize_formulas,
        })
    }

    /// Every filter value with the request field it came from, for checking against the
    /// column types.
    pub fn values(&self) -> Vec<(String, &str, &str)> {
        let mut out = Vec::new();
        for f in &self.filter {
            let base = format!("export.filter.{}", f.column);
            match &f.op {
                FilterOp::Eq { value } => out.push((base, f.column.as_str(), value.as_str())),
                FilterOp::In { values } => {
                    for (i, v) in values.iter().enumerate() {
                        out.push((format!("{base}.in[{i}]"), f.column.as_str(), v.as_str()));
                    }
                }
                FilterOp::Range { gte, lt } => {
                    if let Some(v) = gte {
                        out.push((format!("{base}.gte"), f.column.as_str(), v.as_str()));
                    }
                    if let Some(v) = lt {
                        out.push((format!("{base}.lt"), f.column.as_str(), v.as_str()));
                    }
                }
            }
        }
        out
    }

    /// Checks that every filter value casts to its column's type, in the database (which
    /// knows every type, including the application's own). A value that does not names its
    /// field.
    pub async fn check_values(&self, pool: &sqlx::PgPool, ds: &Dataset) -> Result<(), CheckError> {
        for (field, column, value) in self.values() {
            let col = ds.column(column).ok_or_else(|| {
                CheckError::Invalid(invalid(&field, format!("unknown column `{column}`")))
            })?;
            // The type name comes from the catalog, not from the request.
            let sql = format!("SELECT CAST($1 AS {})::text", col.type_sql);
            match sqlx::query_scalar::<_, Option<String>>(&sql)
                .bind(value)
                .fetch_one(pool)
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("22")) => {
                    return Err(CheckError::Invalid(invalid(
                        field,
                        format!("{value:?} is not a valid {}: {}", col.type_sql, e.message()),
                    )));
                }
                Err(e) => return Err(CheckError::Db(e)),
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Invalid(Invalid),
    #[error("checking filter values failed: {0}")]
    Db(sqlx::Error),
}

fn parse_filter(
    map: &serde_json::Map<String, Value>,
    ds: &Dataset,
) -> Result<Vec<Filter>, Invalid> {
    // serde_json's map is ordered by key, so the stored filter (and the request hash) does
    // not depend on the order the client wrote them in.
    let mut out = Vec::with_capacity(map.len());
    for (column, cond) in map {
        let field = format!("export.filter.{column}");
        if ds.column(column).is_none() {
            return Err(invalid(
                field,
                format!("unknown column `{column}` in dataset `{}`", ds.name),
            ));
        }
        if !ds.is_filterable(column) {
            return Err(invalid(
                field,
                format!(
                    "column `{column}` is not filterable (filterable: {})",
                    ds.filterable.join(", ")
                ),
            ));
        }
        let op = match cond {
            Value::Object(ops) => {
                let ops: BTreeMap<&str, &Value> =
                    ops.iter().map(|(k, v)| (k.as_str(), v)).collect();
                for k in ops.keys() {
                    if !["eq", "in", "gte", "lt"].contains(k) {
                        return Err(invalid(
                            format!("{field}.{k}"),
                            "unknown operator; use eq, in, gte or lt",
                        ));
                    }
                }
                match (ops.get("eq"), ops.get("in"), ops.get("gte"), ops.get("lt")) {
                    (Some(v), None, None, None) => FilterOp::Eq {
                        value: scalar(v, &format!("{field}.eq"))?,
                    },
                    (None, Some(Value::Array(vs)), None, None) => {
                        if vs.is_empty() || vs.len() > MAX_IN_VALUES {
                            return Err(invalid(
                                format!("{field}.in"),
                                format!("must list 1 to {MAX_IN_VALUES} values"),
                            ));
                        }
                        let values = vs
                            .iter()
                            .enumerate()
                            .map(|(i, v)| scalar(v, &format!("{field}.in[{i}]")))
                            .collect::<Result<_, _>>()?;
                        FilterOp::In { values }
                    }
                    (None, Some(_), None, None) => {
                        return Err(invalid(format!("{field}.in"), "must be a list"));
                    }
                    (None, None, gte, lt) if gte.is_some() || lt.is_some() => FilterOp::Range {
                        gte: gte
                            .map(|v| scalar(v, &format!("{field}.gte")))
                            .transpose()?,
                        lt: lt.map(|v| scalar(v, &format!("{field}.lt"))).transpose()?,
                    },
                    _ => {
                        return Err(invalid(
                            field,
                            "use one of: a value, {\"eq\": v}, {\"in\": [..]}, {\"gte\": a, \"lt\": b}",
                        ));
                    }
                }
            }
            v => FilterOp::Eq {
                value: scalar(v, &field)?,
            },
        };
        out.push(Filter {
            column: column.clone(),
            op,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use jobs_core::dataset::Column;

    fn ds() -> Dataset {
        let col = Column::new;
        Dataset {
            name: "expenses".into(),
            table_sql: "\"expenses\"".into(),
            key: col("id", "bigint"),
            columns: vec![
                col("id", "bigint"),
                col("status", "text"),
                col("amount", "numeric(12,2)"),
            ],
            filterable: vec!["status".into(), "amount".into()],
            neutralize_formulas: false,
        }
    }

    fn cfg() -> ExportConfig {
        ExportConfig {
            default_chunk_rows: 100,
            min_chunk_rows: 10,
            max_chunk_rows: 1000,
            exact_plan_max_rows: 1000,
        }
    }

    fn err(v: Value) -> Invalid {
        ExportSpec::parse(&v, &ds(), &cfg()).unwrap_err()
    }

    #[test]
    fn a_full_request_is_normalized() {
        let spec = ExportSpec::parse(
            &json!({"dataset": "expenses", "format": "ndjson", "columns": ["amount", "id"],
                    "filter": {"status": {"in": ["approved", "paid"]}, "amount": {"gte": 10, "lt": 99.5}},
                    "chunk_rows": 500}),
            &ds(),
            &cfg(),
        )
        .unwrap();
        assert_eq!(spec.format, ExportFormat::Ndjson);
        assert_eq!(spec.columns, ["amount", "id"]);
        assert_eq!(spec.chunk_rows, 500);
        assert_eq!(
            spec.filter,
            [
                Filter {
                    column: "amount".into(),
                    op: FilterOp::Range {
                        gte: Some("10".into()),
                        lt: Some("99.5".into())
                    }
                },
                Filter {
                    column: "status".into(),
                    op: FilterOp::In {
                        values: vec!["approved".into(), "paid".into()]
                    }
                },
            ]
        );
        let defaults = ExportSpec::parse(&json!({"dataset": "expenses"}), &ds(), &cfg()).unwrap();
        assert_eq!(
            (defaults.format, defaults.chunk_rows),
            (ExportFormat::Csv, 100)
        );
        assert_eq!(defaults.columns, ["id", "status", "amount"]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                json!({"dataset": "expenses", "format": "xml"}),
                "export.format",
            ),
            (
                json!({"dataset": "expenses", "columns": ["id", "salary"]}),
                "export.columns[1]",
            ),
            (
                json!({"dataset": "expenses", "columns": ["id", "id"]}),
                "export.columns[1]",
            ),
            (
                json!({"dataset": "expenses", "columns": []}),
                "export.columns",
            ),
            (
                json!({"dataset": "expenses", "filter": {"id": 3}}),
                "export.filter.id",
            ),
            (
                json!({"dataset": "expenses", "filter": {"nope": 3}}),
                "export.filter.nope",
            ),
            (
                json!({"dataset": "expenses", "filter": {"status": null}}),
                "export.filter.status",
            ),
            (
                json!({"dataset": "expenses", "filter": {"status": ["a"]}}),
                "export.filter.status",
            ),
            (
                json!({"dataset": "expenses", "filter": {"status": {"like": "a%"}}}),
                "export.filter.status.like",
            ),
            (
                json!({"dataset": "expenses", "filter": {"status": {"in": []}}}),
                "export.filter.status.in",
            ),
            (
                json!({"dataset": "expenses", "filter": {"status": {"in": [1, null]}}}),
                "export.filter.status.in[1]",
            ),
            (
                json!({"dataset": "expenses", "filter": {"amount": {"eq": 1, "lt": 2}}}),
                "export.filter.amount",
            ),
            (
                json!({"dataset": "expenses", "filter": "status = 1"}),
                "export.filter",
            ),
            (
                json!({"dataset": "expenses", "chunk_rows": 5}),
                "export.chunk_rows",
            ),
            (
                json!({"dataset": "expenses", "chunk_rows": "100"}),
                "export.chunk_rows",
            ),
            (
                json!({"dataset": "expenses", "sql": "drop table x"}),
                "export.sql",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(err(request.clone()).field, field, "{request}");
        }
        assert_eq!(
            ExportSpec::dataset_name(&json!({})).unwrap_err().field,
            "export.dataset"
        );
        assert_eq!(
            ExportSpec::dataset_name(&json!({"dataset": 1}))
                .unwrap_err()
                .field,
            "export.dataset"
        );
    }
}
