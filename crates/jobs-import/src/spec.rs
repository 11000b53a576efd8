//! The import request: parsed from JSON with errors naming the field at fault, then checked
//! against the dataset, its table and the upload (a CSV file's header must name columns
//! the import may load), and stored, normalized, as the job's parameters.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::target::Table;
use jobs_core::dataset::Dataset;
use jobs_core::invalid::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    Csv,
    Ndjson,
}

/// An accepted import, as stored in the job's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSpec {
    pub dataset: String,
    pub upload_id: Uuid,
    pub format: ImportFormat,
    /// Validate and count, load nothing.
    pub dry_run: bool,
    /// More rejected rows than this fail the job (rows that passed stay loaded).
    pub max_rejected: u64,
    /// The columns of every record, in order: the CSV header's, or for NDJSON the key and
    /// the dataset's columns.
    pub columns: Vec<String>,
    /// The upload's entity tag when it was recorded: the file is read only while it has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_etag: Option<String>,
}

/// The request's own fields, before the dataset, table and upload are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub dataset: String,
    pub upload_id: Uuid,
    pub format: ImportFormat,
    pub dry_run: bool,
    pub max_rejected: u64,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The JSON Schema of an import request (the object under `import`), for the API's OpenAPI
/// document. [`ImportRequest::parse`] and the checks after it decide; this describes it.
pub fn request_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "description": "An uploaded file, upserted by key into a configured dataset's table.",
        "examples": [{"dataset": "expenses", "upload_id": "0193a5c2-7d1e-7b3a-9c4f-2f6e8d1a0b5c", "max_rejected": 100}],
        "required": ["dataset", "upload_id"],
        "additionalProperties": false,
        "properties": {
            "dataset": {"type": "string", "minLength": 1, "description": "A dataset of the catalog."},
            "upload_id": {"type": "string", "format": "uuid", "description": "What POST /v1/uploads answered."},
            "format": {"type": "string", "enum": ["csv", "ndjson"], "default": "csv"},
            "dry_run": {"type": ["boolean", "null"], "default": false, "description": "Check and count every row; load none."},
            "max_rejected": {"type": ["integer", "null"], "minimum": 0, "default": 0, "description": "More rejected rows than this fail the job (rows that passed stay loaded)."}
        }
    })
}

impl ImportRequest {
    pub fn parse(v: &Value) -> Result<Self, Invalid> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("import", "must be an object"))?;
        for key in obj.keys() {
            if !["dataset", "upload_id", "format", "dry_run", "max_rejected"]
                .contains(&key.as_str())
            {
                return Err(invalid(format!("import.{key}"), "is not a known field"));
            }
        }
        let dataset = match obj.get("dataset") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(invalid("import.dataset", "must be a non-empty string")),
            None => return Err(invalid("import.dataset", "is required")),
        };
        let upload_id = match obj.get("upload_id") {
            Some(Value::String(s)) => s.parse().map_err(|_| {
                invalid(
                    "import.upload_id",
                    format!("{s:?} is not an upload id (POST /v1/uploads returns one)"),
                )
            })?,
            Some(_) => return Err(invalid("import.upload_id", "must be a string")),
            None => return Err(invalid("import.upload_id", "is required")),
        };
        let format = match obj.get("format") {
            None => ImportFormat::Csv,
            Some(Value::String(s)) if s == "csv" => ImportFormat::Csv,
            Some(Value::String(s)) if s == "ndjson" => ImportFormat::Ndjson,
            Some(_) => return Err(invalid("import.format", "must be \"csv\" or \"ndjson\"")),
        };
        let dry_run = match obj.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("import.dry_run", "must be true or false")),
        };
        let max_rejected = match obj.get("max_rejected") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| invalid("import.max_rejected", "must be an integer of 0 or more"))?,
        };
        Ok(Self {
            dataset,
            upload_id,
            format,
            dry_run,
            max_rejected,
        })
    }
}

/// The column names of a CSV header record (without its line end). A UTF-8 byte order
/// mark before the first name is ignored.
pub fn header_columns(record: &[u8]) -> Result<Vec<String>, String> {
    let record = record.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(record);
    let fields = super::csv::split_fields(record)?;
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let name = f.ok_or_else(|| format!("column {} of the header is empty", i + 1))?;
            String::from_utf8(name.into_owned())
                .map_err(|_| format!("column {} of the header is not UTF-8", i + 1))
        })
        .collect()
}

/// The columns an NDJSON import loads: the key, then the dataset's other columns.
pub fn dataset_columns(ds: &Dataset) -> Vec<String> {
    let mut out = vec![ds.key.name.clone()];
    out.extend(
        ds.columns
            .iter()
            .filter(|c| c.name != ds.key.name)
            .map(|c| c.name.clone()),
    );
    out
}

/// Checks the columns a file holds against the dataset and its table; errors name `field`
/// (where the columns came from: the upload for a CSV header, the dataset for NDJSON).
pub fn check_columns(
    columns: &[String],
    ds: &Dataset,
    table: &Table,
    field: &str,
) -> Result<(), Invalid> {
    for (i, name) in columns.iter().enumerate() {
        if ds.column(name).is_none() {
            let known = dataset_columns(ds).join(", ");
            return Err(invalid(
                field,
                format!(
                    "column `{name}` is not a column of dataset `{}` (its columns: {known})",
                    ds.name
                ),
            ));
        }
        if columns[..i].contains(name) {
            return Err(invalid(field, format!("column `{name}` appears twice")));
        }
        if table.column(name).is_some_and(|c| c.generated) {
            return Err(invalid(
                field,
                format!("column `{name}` is generated by the database and cannot be imported"),
            ));
        }
    }
    if !columns.contains(&ds.key.name) {
        return Err(invalid(
            field,
            format!(
                "the key column `{}` is missing; an import upserts by it",
                ds.key.name
            ),
        ));
    }
    let missing = table.required_missing(columns);
    if !missing.is_empty() {
        return Err(invalid(
            field,
            format!(
                "column(s) {} are NOT NULL without a default and must be in the file",
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::target::TableColumn;
    use jobs_core::dataset::Column;

    fn ds() -> Dataset {
        Dataset {
            name: "things".into(),
            table_sql: "\"things\"".into(),
            key: Column::new("id", "bigint"),
            columns: vec![Column::new("id", "bigint"), Column::new("note", "text")],
            filterable: vec![],
            neutralize_formulas: false,
        }
    }

    fn table(note_required: bool) -> Table {
        let col = |name: &str, not_null: bool| TableColumn {
            name: name.into(),
            type_sql: "text".into(),
            base_type_sql: "text".into(),
            not_null,
            has_default: false,
            generated: false,
            json: false,
            has_equality: true,
        };
        Table {
            relkind: "r".into(),
            columns: vec![col("id", true), col("note", note_required)],
            key_is_unique: true,
        }
    }

    #[test]
    fn requests_parse_with_defaults_and_name_bad_fields() {
        let id = Uuid::now_v7();
        let r = ImportRequest::parse(&json!({"dataset": "things", "upload_id": id.to_string()}))
            .unwrap();
        assert_eq!(
            (r.format, r.dry_run, r.max_rejected),
            (ImportFormat::Csv, false, 0)
        );
        let cases = [
            (json!({"upload_id": id.to_string()}), "import.dataset"),
            (json!({"dataset": "t"}), "import.upload_id"),
            (
                json!({"dataset": "t", "upload_id": "x"}),
                "import.upload_id",
            ),
            (
                json!({"dataset": "t", "upload_id": id.to_string(), "format": "xml"}),
                "import.format",
            ),
            (
                json!({"dataset": "t", "upload_id": id.to_string(), "dry_run": "yes"}),
                "import.dry_run",
            ),
            (
                json!({"dataset": "t", "upload_id": id.to_string(), "max_rejected": -1}),
                "import.max_rejected",
            ),
            (
                json!({"dataset": "t", "upload_id": id.to_string(), "sql": 1}),
                "import.sql",
            ),
            (json!([1]), "import"),
        ];
        for (request, field) in cases {
            assert_eq!(
                ImportRequest::parse(&request).unwrap_err().field,
                field,
                "{request}"
            );
        }
    }

    #[test]
    fn headers_are_checked_against_dataset_and_table() {
        assert_eq!(
            header_columns(b"\xEF\xBB\xBFid,\"note\"").unwrap(),
            ["id", "note"]
        );
        assert!(
            header_columns(b"id,,note")
                .unwrap_err()
                .contains("column 2")
        );
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_columns(&cols(&["note", "id"]), &ds(), &table(true), "f").unwrap();
        check_columns(&cols(&["id"]), &ds(), &table(false), "f").unwrap();
        for (c, t, expect) in [
            (
                cols(&["id", "salary"]),
                table(false),
                "`salary` is not a column",
            ),
            (cols(&["id", "id"]), table(false), "appears twice"),
            (cols(&["note"]), table(false), "key column `id` is missing"),
            (cols(&["id"]), table(true), "note are NOT NULL"),
        ] {
            let e = check_columns(&c, &ds(), &t, "import.upload_id").unwrap_err();
            assert_eq!(e.field, "import.upload_id");
            assert!(e.message.contains(expect), "{c:?}: {}", e.message);
        }
    }
}
