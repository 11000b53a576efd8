//! CSV records as Postgres's `COPY … (FORMAT csv)` reads them, so that an export imports
//! back unchanged:
//! - fields are separated by `,`; a `"` anywhere in a field opens or closes a quoted
//!   section, inside which `""` is one `"` and `,`, `\r` and `\n` are data;
//! - a field that is empty and was never quoted is NULL; `""` is the empty string;
//! - a record ends at a `\n` outside quotes, and a `\r` just before it is dropped (CRLF);
//! - nothing is trimmed. Blank lines are skipped (Postgres would read them as one NULL).
//!
//! The `csv` crate does not say whether a field was quoted, which decides NULL versus the
//! empty string, hence this small parser. Unquoted fields and quoted fields without escapes
//! are borrowed from the input; only fields with `""` or mid-field quotes are copied.

use std::borrow::Cow;

/// One field: `None` is NULL.
pub type Field<'a> = Option<Cow<'a, [u8]>>;

/// One record of a range, or why it could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The line the record starts on.
    pub line: u64,
    /// The record's bytes without its line end (for reports).
    pub raw: &'a [u8],
    pub fields: Result<Vec<Field<'a>>, String>,
}

/// The records of `data` (a whole number of records, as the planner cuts them), the first
/// starting on line `line`.
#[derive(Debug)]
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8], line: u64) -> Self {
        Self { data, pos: 0, line }
    }
}

/// Offset just after the end of the first record of `data` (after its `\n`), if the record
/// ends within `data`.
pub fn first_record_end(data: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut i = 0;
    while let Some(off) = memchr::memchr2(b'"', b'\n', &data[i..]) {
        let at = i + off;
        if data[at] == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            return Some(at + 1);
        }
        i = at + 1;
    }
    None
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        loop {
            if self.pos >= self.data.len() {
                return None;
            }
            let rest = &self.data[self.pos..];
            let end = first_record_end(rest).unwrap_or(rest.len());
            let line = self.line;
            self.line += memchr::memchr_iter(b'\n', &rest[..end]).count() as u64;
            self.pos += end;
            let mut raw = &rest[..end];
            if let Some(r) = raw.strip_suffix(b"\n") {
                raw = r.strip_suffix(b"\r").unwrap_or(r);
            }
            if raw.is_empty() {
                continue;
            }
            return Some(Record {
                line,
                raw,
                fields: split_fields(raw),
            });
        }
    }
}

/// The fields of one record (without its line end).
pub fn split_fields(rec: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut saw_quote = false;
        let mut owned: Option<Vec<u8>> = None;
        // The borrowed value so far, when the field is one plain or one quoted section.
        let mut borrowed: Option<&[u8]> = None;
        let mut in_quotes = false;
        let field_end;
        loop {
            if in_quotes {
                let Some(off) = memchr::memchr(b'"', &rec[i..]) else {
                    return Err(format!(
                        "unterminated quoted field (field {} of the record)",
                        fields.len() + 1
                    ));
                };
                let at = i + off;
                append(&mut owned, &mut borrowed, &rec[i..at]);
                if rec.get(at + 1) == Some(&b'"') {
                    append(&mut owned, &mut borrowed, b"\"");
                    i = at + 2;
                } else {
                    in_quotes = false;
                    i = at + 1;
                }
            } else {
                match memchr::memchr2(b',', b'"', &rec[i..]) {
                    None => {
                        append(&mut owned, &mut borrowed, &rec[i..]);
                        i = rec.len();
                        field_end = None;
                        break;
                    }
                    Some(off) => {
                        let at = i + off;
                        append(&mut owned, &mut borrowed, &rec[i..at]);
                        if rec[at] == b',' {
                            i = at + 1;
                            field_end = Some(at);
                            break;
                        }
                        saw_quote = true;
                        in_quotes = true;
                        i = at + 1;
                    }
                }
            }
        }
        let value: Field<'_> = match (owned, borrowed) {
            (Some(v), _) => Some(Cow::Owned(v)),
            (None, Some(b)) if saw_quote || !b.is_empty() => Some(Cow::Borrowed(b)),
            _ => None,
        };
        fields.push(value);
        if field_end.is_none() {
            return Ok(fields);
        }
    }
}

/// Adds `piece` to a field value: the first piece is borrowed, a second one makes a copy.
fn append<'a>(owned: &mut Option<Vec<u8>>, borrowed: &mut Option<&'a [u8]>, piece: &'a [u8]) {
    if let Some(v) = owned {
        v.extend_from_slice(piece);
        return;
    }
    match borrowed {
        None => *borrowed = Some(piece),
        Some(b) if piece.is_empty() => *borrowed = Some(b),
        Some([]) => *borrowed = Some(piece),
        Some(b) => {
            let mut v = b.to_vec();
            v.extend_from_slice(piece);
            *owned = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(rec: &str) -> Vec<Option<String>> {
        split_fields(rec.as_bytes())
            .unwrap()
            .into_iter()
            .map(|f| f.map(|v| String::from_utf8(v.into_owned()).unwrap()))
            .collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn fields_follow_postgres_csv_rules() {
        assert_eq!(fields("a,b"), [s("a"), s("b")]);
        assert_eq!(fields(",\"\","), [None, s(""), None]);
        assert_eq!(fields(""), [None]);
        assert_eq!(
            fields("\"a,b\",\"say \"\"hi\"\"\""),
            [s("a,b"), s("say \"hi\"")]
        );
        assert_eq!(fields("\"x\ny\r\nz\""), [s("x\ny\r\nz")]);
        // A quote in mid-field opens a quoted section (Postgres: `a"b,c"d` is `ab,cd`).
        assert_eq!(fields("a\"b,c\"d,e"), [s("ab,cd"), s("e")]);
        assert_eq!(fields(" a , b "), [s(" a "), s(" b ")]);
        assert_eq!(fields("\\.,\"\\N\""), [s("\\."), s("\\N")]);
        assert_eq!(fields("東京,🚀"), [s("東京"), s("🚀")]);
        assert_eq!(fields("\"\"\"\""), [s("\"")]);
        assert!(split_fields(b"1,\"open").unwrap_err().contains("field 2"));
    }

    #[test]
    fn plain_fields_are_borrowed() {
        let f = split_fields(b"abc,\"quoted\",\"with \"\"escape\"\"\"").unwrap();
        assert!(matches!(f[0], Some(Cow::Borrowed(_))));
        assert!(matches!(f[1], Some(Cow::Borrowed(b"quoted"))));
        assert!(matches!(f[2], Some(Cow::Owned(_))));
    }

    #[test]
    fn records_know_their_lines_and_skip_blank_ones() {
        let data = b"1,\"a\nb\"\r\n\n2,x\r\n\r\n3,\"\"";
        let recs: Vec<(u64, &[u8])> = Records::new(data, 10).map(|r| (r.line, r.raw)).collect();
        assert_eq!(
            recs,
            [
                (10, &b"1,\"a\nb\""[..]),
                (13, &b"2,x"[..]),
                (15, &b"3,\"\""[..])
            ]
        );
        assert_eq!(first_record_end(b"a,\"b\nc\"\nd"), Some(8));
        assert_eq!(first_record_end(b"a,\"b\nc"), None);
    }
}
