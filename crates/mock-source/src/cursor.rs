//! The opaque cursor of cursor paging: URL-safe base64 of `after:<last id served>`.
//!
//! Clients must treat it as opaque; the prefix lets the source tell a mangled or foreign
//! cursor (a `400`) from a valid one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const PREFIX: &str = "after:";

/// Resume after record `last_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub last_id: u64,
}

impl Cursor {
    pub(crate) fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}", self.last_id))
    }

    /// `None` for anything [`Cursor::encode`] did not produce.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let digits = text.strip_prefix(PREFIX)?;
        // `u64::from_str` accepts a leading '+'; a cursor we issued never has one.
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(|last_id| Self { last_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for last_id in [0, 1, 99, u64::MAX] {
            let cursor = Cursor { last_id };
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    #[test]
    fn is_url_safe() {
        let encoded = Cursor { last_id: 123_456 }.encode();
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn rejects_what_it_did_not_issue() {
        let forged = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for bad in [
            "not base64!".to_owned(),
            "42".to_owned(),
            forged("42"),
            forged("after:"),
            forged("after:+4"),
            forged("after:-4"),
            forged("after:99999999999999999999999"),
        ] {
            assert_eq!(Cursor::decode(&bad), None, "{bad}");
        }
    }
}
