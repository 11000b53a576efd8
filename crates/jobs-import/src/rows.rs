//! The rows of one range: its records parsed (CSV or NDJSON) and checked for what Rust can
//! judge exactly — the number of fields, UTF-8, NUL bytes, a NULL key. Types are left to
//! Postgres: it alone knows every type's input rules, including the application's own
//! types and domains.

use super::csv::{Field, Records};
use super::rejects::{Reject, clip};
use super::target::TableColumn;
use super::{ImportFormat, ndjson};

/// One record: its line and its fields, or why it was refused.
pub type Row<'a> = (u64, Result<Vec<Field<'a>>, Reject>);

/// The rows of a range, in file order (blank lines skipped).
#[derive(Debug)]
pub struct Rows<'a> {
    source: Source<'a>,
    columns: &'a [&'a TableColumn],
    key: usize,
    names: Vec<String>,
    json: Vec<bool>,
}

#[derive(Debug)]
enum Source<'a> {
    Csv(Records<'a>),
    Ndjson { data: &'a [u8], line: u64 },
}

impl<'a> Rows<'a> {
    /// The rows of `data`, a range starting on line `line`, holding `columns` (the key is
    /// number `key`).
    pub fn new(
        format: ImportFormat,
        data: &'a [u8],
        line: u64,
        columns: &'a [&'a TableColumn],
        key: usize,
    ) -> Self {
        let source = match format {
            ImportFormat::Csv => Source::Csv(Records::new(data, line)),
            ImportFormat::Ndjson => Source::Ndjson {
                // A byte order mark can only open the file, hence the first range.
                data: data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data),
                line,
            },
        };
        Self {
            source,
            columns,
            key,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            json: columns.iter().map(|c| c.json).collect(),
        }
    }

    fn next_raw(&mut self) -> Option<Row<'a>> {
        match &mut self.source {
            Source::Csv(records) => {
                let rec = records.next()?;
                let expected = self.columns.len();
                let fields = rec
                    .fields
                    .map_err(|reason| whole(rec.line, rec.raw, reason))
                    .and_then(|f| {
                        if f.len() == expected {
                            Ok(f)
                        } else {
                            let reason = format!(
                                "expected {expected} fields, as in the header, found {}",
                                f.len()
                            );
                            Err(whole(rec.line, rec.raw, reason))
                        }
                    });
                Some((rec.line, fields))
            }
            Source::Ndjson { data, line } => loop {
                if data.is_empty() {
                    return None;
                }
                let end = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
                let (raw, rest) = data.split_at(end);
                *data = rest;
                let at = *line;
                *line += 1;
                let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let fields = ndjson::fields(raw, &self.names, &self.json).map_err(|e| Reject {
                    line: at,
                    value: Some(clip(raw)),
                    column: e.column,
                    reason: e.reason,
                });
                return Some((at, fields));
            },
        }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        let (line, fields) = self.next_raw()?;
        let checked = fields.and_then(|f| check(&f, self.columns, self.key, line).map(|()| f));
        Some((line, checked))
    }
}

fn whole(line: u64, raw: &[u8], reason: String) -> Reject {
    Reject {
        line,
        column: String::new(),
        value: Some(clip(raw)),
        reason,
    }
}

/// What Rust can tell for certain about a record's fields.
fn check(
    fields: &[Field<'_>],
    columns: &[&TableColumn],
    key: usize,
    line: u64,
) -> Result<(), Reject> {
    for (i, f) in fields.iter().enumerate() {
        let reject = |value: Option<&[u8]>, reason: &str| Reject {
            line,
            column: columns[i].name.clone(),
            value: value.map(clip),
            reason: reason.to_owned(),
        };
        match f {
            None if i == key => return Err(reject(None, "the key is empty (NULL)")),
            None => {}
            Some(v) => {
                if std::str::from_utf8(v).is_err() {
                    return Err(reject(Some(v), "not valid UTF-8"));
                }
                if memchr::memchr(0, v).is_some() {
                    return Err(reject(
                        Some(v),
                        "contains a NUL byte, which Postgres text cannot hold",
                    ));
                }
            }
        }
    }
    Ok(())
}
