//! The deterministic dataset a mock source serves, computed record by record.
//!
//! Record `i` (for `i` in `1..=records`) is a pure function of `i` and the options, so the
//! server never stores records and tests elsewhere can regenerate what an ingest job should
//! have fetched with [`record`].

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::MockSourceOptions;

/// `2026-01-01T00:00:00Z`: the `updated_at` of the record whose time offset is zero.
pub const BASE_TIME_UNIX: i64 = 1_767_225_600;

/// The multiplier that scatters `updated_at` across ids: record `i` was updated
/// `i * TIME_STRIDE % records` seconds after [`BASE_TIME_UNIX`], so id order and time order
/// differ and time-window partitions cut across id ranges.
pub(crate) const TIME_STRIDE: u64 = 37;

/// One record as served: `{"id", "name", "updated_at", "payload"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `1..=records`.
    pub id: u64,
    /// `record-{id}`.
    pub name: String,
    /// RFC 3339 UTC, whole seconds (`2026-01-01T00:00:37Z`).
    pub updated_at: String,
    /// `payload_bytes` characters of `[A-Za-z0-9_-]` derived from the id.
    pub payload: String,
}

impl Record {
    /// Computes record `id` of the dataset described by `opts`. Ids outside `1..=records`
    /// still produce a record (the server never serves them).
    pub fn generate(opts: &MockSourceOptions, id: u64) -> Self {
        Self {
            id,
            name: format!("record-{id}"),
            updated_at: updated_at(opts.records, id).to_rfc3339_opts(SecondsFormat::Secs, true),
            payload: payload(id, opts.payload_bytes),
        }
    }
}

/// Record `id` of the dataset described by `opts`, as the JSON the source serves.
pub fn record(opts: &MockSourceOptions, id: u64) -> serde_json::Value {
    let Record {
        id,
        name,
        updated_at,
        payload,
    } = Record::generate(opts, id);
    serde_json::json!({"id": id, "name": name, "updated_at": updated_at, "payload": payload})
}

/// The base time, `2026-01-01T00:00:00Z`.
pub fn base_time() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(BASE_TIME_UNIX)
}

/// Seconds between the base time and record `id`'s `updated_at`: `id * 37 % records`.
pub(crate) fn time_offset(records: u64, id: u64) -> u64 {
    if records == 0 {
        return 0;
    }
    // u128: `id * 37` overflows u64 for ids above u64::MAX / 37.
    (u128::from(id) * u128::from(TIME_STRIDE) % u128::from(records)) as u64
}

/// Record `id`'s `updated_at`. Saturates at chrono's maximum for datasets above
/// [`MAX_RECORDS`](crate::MAX_RECORDS), which a running source never has.
pub fn updated_at(records: u64, id: u64) -> DateTime<Utc> {
    i64::try_from(time_offset(records, id))
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|offset| base_time().checked_add_signed(offset))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `len` characters drawn from a 64-letter alphabet by a SplitMix64 stream seeded with `id`:
/// cheap, deterministic, and different for every id.
fn payload(id: u64, len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = id;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Ten 6-bit letters per 64-bit draw.
        for shift in (0..60).step_by(6).take(len - out.len()) {
            out.push(char::from(ALPHABET[((z >> shift) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(records: u64, payload_bytes: usize) -> MockSourceOptions {
        MockSourceOptions {
            records,
            payload_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn base_time_is_new_year_2026() {
        assert_eq!(base_time().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn record_has_the_documented_shape() {
        let value = record(&opts(1_000, 16), 10);
        assert_eq!(value["id"], 10);
        assert_eq!(value["name"], "record-10");
        // 10 * 37 % 1000 = 370 s = 6 min 10 s.
        assert_eq!(value["updated_at"], "2026-01-01T00:06:10Z");
        assert_eq!(value["payload"].as_str().map(str::len), Some(16));
    }

    #[test]
    fn records_are_deterministic_and_distinct() {
        let opts = opts(1_000, 64);
        assert_eq!(record(&opts, 7), record(&opts, 7));
        assert_ne!(record(&opts, 7)["payload"], record(&opts, 8)["payload"]);
    }

    #[test]
    fn payload_has_the_requested_length() {
        for len in [0, 1, 9, 10, 11, 64, 1000] {
            assert_eq!(payload(42, len).len(), len);
        }
    }

    #[test]
    fn time_offsets_wrap_around_the_dataset_size() {
        assert_eq!(time_offset(100, 1), 37);
        assert_eq!(time_offset(100, 3), 11);
        assert_eq!(time_offset(100, 100), 0);
        assert_eq!(time_offset(0, 5), 0);
        assert!(time_offset(u64::MAX, u64::MAX) < u64::MAX);
    }
}
