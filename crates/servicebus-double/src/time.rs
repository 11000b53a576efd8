//! RFC 1123 dates, the format Service Bus uses for every time in `BrokerProperties`
//! (`EnqueuedTimeUtc`, `LockedUntilUtc`, `ScheduledEnqueueTimeUtc`): second precision, "GMT".

use chrono::{DateTime, Utc};

/// Formats `t` as `Sun, 06 Nov 1994 08:49:37 GMT`. Sub-second precision is dropped, i.e. the
/// instant is rounded down to the second (as the real service does for `LockedUntilUtc`).
pub fn format_rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parses an RFC 1123 (RFC 2822 subset) date such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_rfc1123(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_and_parses_rfc1123() {
        let t = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).unwrap();
        assert_eq!(format_rfc1123(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_rfc1123("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_rfc1123("yesterday"), None);
    }

    #[test]
    fn formatting_rounds_down_to_the_second() {
        let t = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
            + chrono::TimeDelta::milliseconds(999);
        assert_eq!(format_rfc1123(t), "Wed, 02 Jan 2030 03:04:05 GMT");
    }
}
