//! The import plan: an uploaded file cut into byte ranges at record boundaries.
//!
//! The file is streamed once (the blob store's ranged reads) through a [`Splitter`], which
//! tracks two things per byte: whether it is inside a CSV quoted field (every `"` toggles
//! the state; an escaped `""` toggles it twice, so it needs no special case — the same rule
//! Postgres applies), and the physical line number (every `\n` counts, quoted or not, so a
//! reject can name the line an editor shows). A record ends at a `\n` outside quotes; a
//! `\r` before it belongs to the record and is dropped when the record is parsed, so CRLF
//! files split the same way. Once a range holds at least `chunk_bytes`, it ends at the next
//! record boundary. NDJSON documents cannot hold a raw newline, so quotes play no part.
//!
//! For CSV the first record is the header: it is left out of every range (the job stores
//! the column names it lists). A record longer than [`MAX_RECORD_BYTES`] stops the plan:
//! one would otherwise make a range of unbounded size — it is what a file with bare `\r`
//! line ends, or a stray quote early in a CSV file, looks like.

use super::ByteRange;

/// The longest record a plan accepts.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "the record starting on line {line} is longer than {max} bytes; records must end with \
         a line feed (LF or CRLF), and in CSV an unbalanced quote makes the rest of the file \
         one record"
    )]
    RecordTooLong { line: u64, max: u64 },
}

/// Cuts a stream of bytes into [`ByteRange`]s; feed it the file in order, then
/// [`Splitter::finish`].
#[derive(Debug)]
pub struct Splitter {
    csv: bool,
    chunk_bytes: u64,
    max_record: u64,
    /// CSV: the next record to end is the header, which belongs to no range.
    in_header: bool,
    in_quotes: bool,
    /// Offset of the next byte fed.
    pos: u64,
    /// Line number of the next byte fed (1-based).
    line: u64,
    record_start: u64,
    record_line: u64,
    range_start: u64,
    range_line: u64,
    ranges: Vec<ByteRange>,
}

impl Splitter {
    /// A splitter for CSV (`csv`, with a header record) or NDJSON, cutting after at least
    /// `chunk_bytes` per range.
    pub fn new(csv: bool, chunk_bytes: u64) -> Self {
        Self::with_max_record(csv, chunk_bytes, MAX_RECORD_BYTES)
    }

    pub fn with_max_record(csv: bool, chunk_bytes: u64, max_record: u64) -> Self {
        Self {
            csv,
            chunk_bytes: chunk_bytes.max(1),
            max_record,
            in_header: csv,
            in_quotes: false,
            pos: 0,
            line: 1,
            record_start: 0,
            record_line: 1,
            range_start: 0,
            range_line: 1,
            ranges: Vec::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SplitError> {
        let mut i = 0;
        while i < chunk.len() {
            let found = if self.csv {
                memchr::memchr2(b'"', b'\n', &chunk[i..])
            } else {
                memchr::memchr(b'\n', &chunk[i..])
            };
            let Some(off) = found else { break };
            let at = i + off;
            if chunk[at] == b'"' {
                self.in_quotes = !self.in_quotes;
            } else {
                self.line += 1;
                if !self.in_quotes {
                    self.record_end(self.pos + at as u64 + 1)?;
                }
            }
            i = at + 1;
        }
        self.pos += chunk.len() as u64;
        self.check_record(self.pos)
    }

    fn check_record(&self, upto: u64) -> Result<(), SplitError> {
        if upto - self.record_start > self.max_record {
            return Err(SplitError::RecordTooLong {
                line: self.record_line,
                max: self.max_record,
            });
        }
        Ok(())
    }

    /// A record ended just before offset `end`; `self.line` is the line `end` is on.
    fn record_end(&mut self, end: u64) -> Result<(), SplitError> {
        self.check_record(end)?;
        if self.in_header {
            self.in_header = false;
            self.range_start = end;
            self.range_line = self.line;
        } else if end - self.range_start >= self.chunk_bytes {
            self.ranges.push(ByteRange {
                start: self.range_start,
                end,
                line: self.range_line,
            });
            self.range_start = end;
            self.range_line = self.line;
        }
        self.record_start = end;
        self.record_line = self.line;
        Ok(())
    }

    /// The ranges, the last one ending at the end of the file (whether or not its last
    /// record ends with a newline). A CSV file holding no more than its header has none.
    pub fn finish(mut self) -> Vec<ByteRange> {
        if !self.in_header && self.range_start < self.pos {
            self.ranges.push(ByteRange {
                start: self.range_start,
                end: self.pos,
                line: self.range_line,
            });
        }
        self.ranges
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn split(data: &[u8], csv: bool, chunk: u64, feed: usize) -> Vec<ByteRange> {
        let mut s = Splitter::new(csv, chunk);
        for piece in data.chunks(feed.max(1)) {
            s.feed(piece).unwrap();
        }
        s.finish()
    }

    /// A random CSV file of valid records: fields quoted or not, with commas, quotes,
    /// newlines, carriage returns, unicode and empty values; LF or CRLF line ends; with or
    /// without a final newline.
    fn random_csv(rng: &mut StdRng) -> Vec<u8> {
        let pieces = [
            "a", "b,c", "\"", "\n", "\r\n", "é", "東", "", " ", "\"\"", "x\ry",
        ];
        let crlf = rng.random_bool(0.5);
        let mut out = Vec::new();
        let records = rng.random_range(1..30);
        for r in 0..records {
            let fields = rng.random_range(1..5);
            for f in 0..fields {
                if f > 0 {
                    out.push(b',');
                }
                let value: String = (0..rng.random_range(0..4))
                    .map(|_| pieces[rng.random_range(0..pieces.len())])
                    .collect();
                let needs_quotes = value.contains([',', '"', '\n', '\r']);
                if needs_quotes || rng.random_bool(0.3) {
                    out.push(b'"');
                    out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
                    out.push(b'"');
                } else {
                    out.extend_from_slice(value.as_bytes());
                }
            }
            if r + 1 < records || rng.random_bool(0.7) {
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
        }
        out
    }

    /// Quote state and line number at every offset, computed from the start of the file.
    fn states(data: &[u8]) -> Vec<(bool, u64)> {
        let (mut q, mut line) = (false, 1);
        let mut out = Vec::with_capacity(data.len() + 1);
        for &b in data {
            out.push((q, line));
            match b {
                b'"' => q = !q,
                b'\n' => line += 1,
                _ => {}
            }
        }
        out.push((q, line));
        out
    }

    #[test]
    fn ranges_tile_the_data_and_start_on_record_boundaries_for_any_chunk_size() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for case in 0..300 {
            let data = random_csv(&mut rng);
            let st = states(&data);
            let header_end = st
                .iter()
                .enumerate()
                .skip(1)
                .find(|(i, (q, _))| !q && data[i - 1] == b'\n')
                .map_or(data.len(), |(i, _)| i);
            for chunk in 1..=data.len() as u64 + 1 {
                let feed = rng.random_range(1..=data.len().max(1));
                let ranges = split(&data, true, chunk, feed);
                // Concatenated, the ranges are the file after its header.
                let mut joined = Vec::new();
                let mut at = header_end as u64;
                for r in &ranges {
                    assert_eq!(r.start, at, "case {case} chunk {chunk}: a gap or overlap");
                    assert!(r.end > r.start, "case {case}: an empty range");
                    joined.extend_from_slice(&data[r.start as usize..r.end as usize]);
                    at = r.end;
                }
                assert_eq!(joined, &data[header_end..], "case {case} chunk {chunk}");
                for r in &ranges {
                    let (in_quotes, line) = st[r.start as usize];
                    assert!(
                        !in_quotes,
                        "case {case} chunk {chunk}: {r:?} starts inside quotes"
                    );
                    assert_eq!(data[r.start as usize - 1], b'\n', "case {case}: {r:?}");
                    assert_eq!(r.line, line, "case {case} chunk {chunk}: {r:?}");
                }
                // Every range but the last holds at least `chunk` bytes.
                for r in ranges.iter().rev().skip(1) {
                    assert!(r.end - r.start >= chunk, "case {case}: {r:?} < {chunk}");
                }
            }
        }
    }

    #[test]
    fn newlines_inside_quotes_never_cut_a_record() {
        let data = b"id,note\n1,\"a\nb\"\n2,\"say \"\"hi\"\"\nthere\"\r\n3,x";
        let ranges = split(data, true, 1, 3);
        let texts: Vec<&[u8]> = ranges
            .iter()
            .map(|r| &data[r.start as usize..r.end as usize])
            .collect();
        assert_eq!(
            texts,
            [
                &b"1,\"a\nb\"\n"[..],
                &b"2,\"say \"\"hi\"\"\nthere\"\r\n"[..],
                &b"3,x"[..]
            ]
        );
        assert_eq!(ranges.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 6]);
    }

    #[test]
    fn ndjson_cuts_at_every_line_feed_and_has_no_header() {
        let data = b"{\"a\":\"\\\"\"}\n{\"a\":2}\n\n{\"a\":3}\n";
        let ranges = split(data, false, 1, 5);
        assert_eq!(
            ranges,
            [
                ByteRange {
                    start: 0,
                    end: 11,
                    line: 1
                },
                ByteRange {
                    start: 11,
                    end: 19,
                    line: 2
                },
                ByteRange {
                    start: 19,
                    end: 20,
                    line: 3
                },
                ByteRange {
                    start: 20,
                    end: 28,
                    line: 4
                },
            ]
        );
        assert_eq!(split(data, false, 1 << 20, 7).len(), 1);
    }

    #[test]
    fn a_header_alone_makes_no_range() {
        assert!(split(b"id,note\n", true, 1, 4).is_empty());
        assert!(split(b"id,note", true, 1, 4).is_empty());
        assert!(split(b"", true, 1, 4).is_empty());
        assert!(split(b"", false, 1, 4).is_empty());
    }

    #[test]
    fn an_overlong_record_names_its_line() {
        let mut s = Splitter::with_max_record(true, 4, 10);
        s.feed(b"h\n1,ok\n2,\"never closed\n3,x\n4,y\n")
            .unwrap_err();
        let mut s = Splitter::with_max_record(true, 4, 10);
        let err = s
            .feed(b"h\n1,ok\n2,\"never")
            .and_then(|()| s.feed(b" closed"));
        assert_eq!(err, Err(SplitError::RecordTooLong { line: 3, max: 10 }));
    }
}
