//! Rejected rows: what each work item could not load, and the one report the job links to.
//!
//! Every rejected row is one CSV line `line,column,value,reason`: the line of the file the
//! record starts on, the column at fault (empty when the whole record is: a wrong number of
//! fields, a line that is not JSON), the value as the file had it (cut to
//! [`MAX_VALUE_CHARS`]; empty for NULL, `""` for the empty string, as in the file) and why.
//! An item writes its rejects, in line order, to a file at a deterministic path (a
//! redelivery overwrites it); the finalizer streams the items' files, in item order — hence
//! line order — under one header.

use futures::StreamExt;

use super::report_path;
use jobs_core::blob::{BlobError, BlobStore, Written};
use jobs_core::id::JobId;

/// Longest value a report repeats, in characters.
pub const MAX_VALUE_CHARS: usize = 200;

pub const HEADER: &[u8] = b"line,column,value,reason\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub line: u64,
    pub column: String,
    /// `None` for NULL.
    pub value: Option<String>,
    pub reason: String,
}

/// A value as text for a report: invalid UTF-8 replaced, long values cut with `…`.
pub fn clip(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(MAX_VALUE_CHARS).collect();
    out.push('…');
    out
}

fn field(out: &mut Vec<u8>, value: &str, null_if_empty: bool) {
    if value.is_empty() && null_if_empty {
        return;
    }
    if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// Appends one report line.
pub fn write_line(out: &mut Vec<u8>, r: &Reject) {
    out.extend_from_slice(r.line.to_string().as_bytes());
    out.push(b',');
    field(out, &r.column, true);
    out.push(b',');
    match &r.value {
        None => {}
        Some(v) => field(out, v, false),
    }
    out.push(b',');
    field(out, &r.reason, true);
    out.push(b'\n');
}

/// Writes an item's rejects, sorted by line, to `path`; returns the bytes written.
pub async fn write_part(
    blobs: &BlobStore,
    path: &str,
    rejects: &mut [Reject],
) -> Result<u64, BlobError> {
    rejects.sort_by_key(|r| r.line);
    let mut writer = blobs.writer(path).await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    for r in rejects.iter() {
        write_line(&mut buf, r);
        if buf.len() >= 1 << 20 {
            if let Err(e) = writer.write(&buf).await {
                writer.abort().await;
                return Err(e);
            }
            buf.clear();
        }
    }
    if let Err(e) = writer.write(&buf).await {
        writer.abort().await;
        return Err(e);
    }
    Ok(writer.finish().await?.bytes)
}

/// Writes the job's report: the header, then the item files `parts` in order, streamed.
pub async fn assemble(
    blobs: &BlobStore,
    job_id: JobId,
    parts: &[String],
) -> Result<(String, Written), BlobError> {
    let path = report_path(job_id);
    let mut writer = blobs.writer(&path).await?;
    let copied: Result<(), BlobError> = async {
        writer.write(HEADER).await?;
        for part in parts {
            let mut stream = blobs.read(part).await?;
            while let Some(chunk) = stream.next().await {
                writer.write(&chunk?).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        writer.abort().await;
        return Err(e);
    }
    Ok((path, writer.finish().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_quote_what_needs_it() {
        let mut out = Vec::new();
        let r = |value: Option<&str>, column: &str| Reject {
            line: 12,
            column: column.into(),
            value: value.map(String::from),
            reason: "invalid input syntax for type numeric: \"1,5\"".into(),
        };
        write_line(&mut out, &r(Some("1,5"), "amount"));
        write_line(&mut out, &r(None, "amount"));
        write_line(&mut out, &r(Some(""), ""));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "12,amount,\"1,5\",\"invalid input syntax for type numeric: \"\"1,5\"\"\"\n\
             12,amount,,\"invalid input syntax for type numeric: \"\"1,5\"\"\"\n\
             12,,\"\",\"invalid input syntax for type numeric: \"\"1,5\"\"\"\n"
        );
        let long = "é".repeat(MAX_VALUE_CHARS + 5);
        assert_eq!(clip(long.as_bytes()).chars().count(), MAX_VALUE_CHARS + 1);
        assert_eq!(clip(b"ok\xff"), "ok\u{fffd}");
    }
}
