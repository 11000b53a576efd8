//! Cursor pagination shared by the list routes: a page size from the query, and opaque
//! cursors naming the last item seen by its creation time and id (newest-first order).

use std::fmt::Display;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::ApiError;
use crate::contract::PageQuery;

/// Where a page starts: the creation time and id of the last item seen.
pub type After<I> = Option<(DateTime<Utc>, I)>;

/// The page size ([`limit`]) and what the cursor names ([`cursor`]) of a list route that
/// has no filters of its own.
pub fn read<I: FromStr>(q: PageQuery) -> Result<(u32, After<I>), ApiError> {
    Ok((limit(q.limit)?, cursor(q.cursor)?))
}

/// `limit`: 50 when absent, otherwise 1 to 500.
pub fn limit(raw: Option<String>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(50),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 500")),
    }
}

pub fn encode_cursor(created_at: DateTime<Utc>, id: impl Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", created_at.to_rfc3339()))
}

/// `cursor`, when given: the creation time and id it names.
pub fn cursor<I: FromStr>(raw: Option<String>) -> Result<After<I>, ApiError> {
    raw.map(|c| {
        decode(&c).ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))
    })
    .transpose()
}

fn decode<I: FromStr>(s: &str) -> Option<(DateTime<Utc>, I)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((at, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let (at, id) = (Utc::now(), uuid::Uuid::now_v7());
        let c = encode_cursor(at, id);
        assert_eq!(cursor::<uuid::Uuid>(Some(c)).unwrap(), Some((at, id)));
        assert!(cursor::<uuid::Uuid>(Some("not-a-cursor".into())).is_err());
        assert_eq!(cursor::<uuid::Uuid>(None).unwrap(), None);
        assert!(limit(Some("0".into())).is_err());
        assert!(limit(Some("501".into())).is_err());
        assert_eq!(limit(None).unwrap(), 50);
    }
}
