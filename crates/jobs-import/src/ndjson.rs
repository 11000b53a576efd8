//! NDJSON records: one JSON object per line, its keys naming columns.
//!
//! A key the import does not load is an error of that row; a missing key or `null` is NULL.
//! Values become the text Postgres parses: a string its contents, a number its JSON text
//! exactly as written (no float rounding: `numeric` keeps every digit), `true`/`false`, and
//! for `json`/`jsonb` columns the value's JSON text whatever its kind (so a JSON string
//! stays a JSON string). That is what an NDJSON export (`row_to_json`) writes, so it reads
//! back unchanged.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::csv::Field;

/// Why a line was rejected: the column at fault (empty for the whole line) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub column: String,
    pub reason: String,
}

/// The fields of one NDJSON line, in the order of `columns`; `json[i]` says whether column
/// `i` takes JSON text.
pub fn fields<'a>(
    line: &'a [u8],
    columns: &[String],
    json: &[bool],
) -> Result<Vec<Field<'a>>, LineError> {
    let whole = |reason: String| LineError {
        column: String::new(),
        reason,
    };
    let doc: HashMap<String, &'a RawValue> =
        serde_json::from_slice(line).map_err(|e| whole(format!("not a JSON object: {e}")))?;
    if let Some(unknown) = doc.keys().find(|k| !columns.contains(k)) {
        return Err(LineError {
            column: unknown.clone(),
            reason: format!(
                "`{unknown}` is not a column of this import (columns: {})",
                columns.join(", ")
            ),
        });
    }
    let mut out = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let Some(raw) = doc.get(column) else {
            out.push(None);
            continue;
        };
        let text = raw.get();
        let value: Field<'a> = if text == "null" {
            None
        } else if json.get(i).copied().unwrap_or(false) || !text.starts_with('"') {
            Some(Cow::Borrowed(text.as_bytes()))
        } else {
            match serde_json::from_str::<&'a str>(text) {
                Ok(s) => Some(Cow::Borrowed(s.as_bytes())),
                // Escapes: the string needs decoding into a copy.
                Err(_) => {
                    let s: String = serde_json::from_str(text).map_err(|e| LineError {
                        column: column.clone(),
                        reason: format!("not a JSON string: {e}"),
                    })?;
                    Some(Cow::Owned(s.into_bytes()))
                }
            }
        };
        out.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        ["id", "note", "amount", "doc"].map(String::from).to_vec()
    }

    fn text(f: &Field<'_>) -> Option<String> {
        f.as_ref().map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn values_become_postgres_input_text() {
        let line =
            br#"{"id": 7, "note": "a \"q\"\nb", "amount": 12345678901234567890.0123, "doc": "s"}"#;
        let f = fields(line, &cols(), &[false, false, false, true]).unwrap();
        let got: Vec<Option<String>> = f.iter().map(text).collect();
        assert_eq!(
            got,
            [
                Some("7".into()),
                Some("a \"q\"\nb".into()),
                Some("12345678901234567890.0123".into()),
                Some("\"s\"".into())
            ]
        );
        let f = fields(br#"{"id": 1, "note": null}"#, &cols(), &[false; 4]).unwrap();
        assert_eq!(
            f.iter().map(text).collect::<Vec<_>>(),
            [Some("1".into()), None, None, None]
        );
    }

    #[test]
    fn unknown_keys_and_bad_lines_are_named() {
        let e = fields(br#"{"id": 1, "salary": 3}"#, &cols(), &[false; 4]).unwrap_err();
        assert_eq!(e.column, "salary");
        let e = fields(b"[1, 2]", &cols(), &[false; 4]).unwrap_err();
        assert_eq!(e.column, "");
        assert!(e.reason.starts_with("not a JSON object"), "{}", e.reason);
    }
}
