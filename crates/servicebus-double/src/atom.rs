//! The management plane's wire format: Atom entries wrapping a `QueueDescription`, and the
//! ISO 8601 durations (`PT30S`, `P7D`, `PT0.5S`) Service Bus writes its time spans in.
//!
//! Only the four settings the double models are read (`LockDuration`,
//! `RequiresDuplicateDetection`, `DuplicateDetectionHistoryTimeWindow`, `MaxDeliveryCount`);
//! elements are matched by local name so any namespace prefix works, and every other element
//! is ignored, as the real service ignores read-only ones sent back to it.

use std::time::Duration;

use quick_xml::Reader;
use quick_xml::escape::escape;
use quick_xml::events::Event;

use crate::state::{Counts, QueueSettings};

/// Shortest and longest lock a queue may have (the real service allows 5 s to 5 min; the
/// double goes lower so tests can watch locks expire quickly).
pub const LOCK_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(5 * 60));
/// Shortest and longest duplicate-detection history window.
pub const DEDUPE_WINDOW_RANGE: (Duration, Duration) = (
    Duration::from_millis(100),
    Duration::from_secs(7 * 24 * 3600),
);

/// The settings a `PUT` asked for; `None` where the element was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDescription {
    pub lock_duration: Option<Duration>,
    pub requires_duplicate_detection: Option<bool>,
    pub duplicate_detection_window: Option<Duration>,
    pub max_delivery_count: Option<u32>,
}

/// Why a `QueueDescription` was refused (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("the body has no QueueDescription element")]
    NoQueueDescription,
    #[error("invalid {element}: {reason}")]
    InvalidElement {
        element: &'static str,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
enum Field {
    LockDuration,
    RequiresDuplicateDetection,
    DuplicateDetectionHistoryTimeWindow,
    MaxDeliveryCount,
}

impl Field {
    fn from_local_name(name: &[u8]) -> Option<Self> {
        match name {
            b"LockDuration" => Some(Self::LockDuration),
            b"RequiresDuplicateDetection" => Some(Self::RequiresDuplicateDetection),
            b"DuplicateDetectionHistoryTimeWindow" => {
                Some(Self::DuplicateDetectionHistoryTimeWindow)
            }
            b"MaxDeliveryCount" => Some(Self::MaxDeliveryCount),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::LockDuration => "LockDuration",
            Self::RequiresDuplicateDetection => "RequiresDuplicateDetection",
            Self::DuplicateDetectionHistoryTimeWindow => "DuplicateDetectionHistoryTimeWindow",
            Self::MaxDeliveryCount => "MaxDeliveryCount",
        }
    }
}

/// Reads the settings out of a `PUT /{queue}` body. An empty body means "all defaults".
pub fn parse_queue_description(xml: &str) -> Result<QueueDescription, AtomError> {
    let mut description = QueueDescription::default();
    if xml.trim().is_empty() {
        return Ok(description);
    }
    let mut reader = Reader::from_str(xml);
    let mut saw_description = false;
    let mut inside_description = false;
    // The element whose text is being collected, and that text so far.
    let mut current: Option<Field> = None;
    let mut text = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| AtomError::Malformed(e.to_string()))?;
        match event {
            Event::Start(start) => {
                let local = start.local_name();
                if local.as_ref() == b"QueueDescription" {
                    saw_description = true;
                    inside_description = true;
                }
                current = Field::from_local_name(local.as_ref()).filter(|_| inside_description);
                text.clear();
            }
            Event::Empty(empty) => {
                let local = empty.local_name();
                if local.as_ref() == b"QueueDescription" {
                    saw_description = true;
                } else if let Some(field) =
                    Field::from_local_name(local.as_ref()).filter(|_| inside_description)
                {
                    apply(&mut description, field, "")?;
                }
            }
            Event::Text(t) if current.is_some() => {
                text.push_str(
                    &t.decode()
                        .map_err(|e| AtomError::Malformed(e.to_string()))?,
                );
            }
            Event::CData(c) if current.is_some() => {
                text.push_str(
                    &c.decode()
                        .map_err(|e| AtomError::Malformed(e.to_string()))?,
                );
            }
            // None of the values read here can contain an entity; keep a marker so the value
            // fails to parse instead of silently changing meaning.
            Event::GeneralRef(_) if current.is_some() => text.push('&'),
            Event::End(end) => {
                if end.local_name().as_ref() == b"QueueDescription" {
                    inside_description = false;
                }
                if let Some(field) = current.take() {
                    apply(&mut description, field, text.trim())?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_description {
        return Err(AtomError::NoQueueDescription);
    }
    Ok(description)
}

fn apply(description: &mut QueueDescription, field: Field, value: &str) -> Result<(), AtomError> {
    let invalid = |reason| AtomError::InvalidElement {
        element: field.name(),
        reason,
    };
    match field {
        Field::LockDuration => {
            let d = parse_duration(value).ok_or(invalid("not an ISO 8601 duration"))?;
            if d < LOCK_DURATION_RANGE.0 || d > LOCK_DURATION_RANGE.1 {
                return Err(invalid("must be between PT0.1S and PT5M"));
            }
            description.lock_duration = Some(d);
        }
        Field::DuplicateDetectionHistoryTimeWindow => {
            let d = parse_duration(value).ok_or(invalid("not an ISO 8601 duration"))?;
            if d < DEDUPE_WINDOW_RANGE.0 || d > DEDUPE_WINDOW_RANGE.1 {
                return Err(invalid("must be between PT0.1S and P7D"));
            }
            description.duplicate_detection_window = Some(d);
        }
        Field::RequiresDuplicateDetection => {
            let b = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(invalid("must be true or false")),
            };
            description.requires_duplicate_detection = Some(b);
        }
        Field::MaxDeliveryCount => {
            let n: u32 = value
                .parse()
                .map_err(|_| invalid("must be a positive integer"))?;
            if n == 0 {
                return Err(invalid("must be at least 1"));
            }
            description.max_delivery_count = Some(n);
        }
    }
    Ok(())
}

/// Writes the Atom entry `GET /{queue}` answers with (and `PUT` echoes).
pub fn queue_entry(name: &str, settings: &QueueSettings, counts: Counts) -> String {
    format!(
        concat!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><title type="text">{name}</title>"#,
            r#"<content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
            "<LockDuration>{lock}</LockDuration>",
            "<RequiresDuplicateDetection>{dedupe}</RequiresDuplicateDetection>",
            "<DuplicateDetectionHistoryTimeWindow>{window}</DuplicateDetectionHistoryTimeWindow>",
            "<MaxDeliveryCount>{max}</MaxDeliveryCount>",
            "<MessageCount>{total}</MessageCount>",
            r#"<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus">"#,
            "<d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount>",
            "<d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount>",
            "<d2p1:ScheduledMessageCount>{scheduled}</d2p1:ScheduledMessageCount>",
            "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>",
            "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>",
            "</CountDetails></QueueDescription></content></entry>",
        ),
        name = escape(name),
        lock = format_duration(settings.lock_duration),
        dedupe = settings.requires_duplicate_detection,
        window = format_duration(settings.duplicate_detection_window),
        max = settings.max_delivery_count,
        total = counts.total(),
        active = counts.active,
        dead = counts.dead_letter,
        scheduled = counts.scheduled,
    )
}

/// Parses an ISO 8601 duration of days and time (`PnDTnHnMnS`, seconds may be fractional).
/// Years, months and weeks are refused: they have no fixed length.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut any = false;
    if !date.is_empty() {
        let days = date.strip_suffix('D')?;
        total += Duration::from_secs(parse_digits(days)?.checked_mul(86_400)?);
        any = true;
    }
    if let Some(mut time) = time {
        if time.is_empty() {
            return None;
        }
        // Units must come in this order, each at most once.
        for (unit, seconds) in [('H', 3_600u64), ('M', 60)] {
            if let Some((number, after)) = time.split_once(unit) {
                if number.contains(['H', 'M', 'S']) {
                    return None;
                }
                total += Duration::from_secs(parse_digits(number)?.checked_mul(seconds)?);
                time = after;
                any = true;
            }
        }
        if !time.is_empty() {
            let number = time.strip_suffix('S')?;
            total += parse_seconds(number)?;
            any = true;
        }
    }
    any.then_some(total)
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `12` or `12.345` seconds; digits past nanoseconds are dropped.
fn parse_seconds(s: &str) -> Option<Duration> {
    let (whole, fraction) = match s.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (s, ""),
    };
    let whole = parse_digits(whole)?;
    if s.contains('.') && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut nanos = 0u32;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Duration::new(whole, nanos))
}

/// Writes a duration as `P1DT2H3M4.5S`, leaving out zero parts (`PT30S`, `PT1M`, `PT0.5S`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let nanos = d.subsec_nanos();
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || nanos > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || nanos > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&seconds.to_string());
            if nanos > 0 {
                let fraction = format!("{nanos:09}");
                out.push('.');
                out.push_str(fraction.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, d) in [
            ("PT30S", Duration::from_secs(30)),
            ("PT1M", Duration::from_secs(60)),
            ("PT10M", Duration::from_secs(600)),
            ("PT0.5S", Duration::from_millis(500)),
            ("PT1M30.25S", Duration::from_millis(90_250)),
            ("P7D", Duration::from_secs(7 * 86_400)),
            ("P1DT2H", Duration::from_secs(86_400 + 7_200)),
            ("PT0S", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Some(d), "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(parse_duration("PT90S"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("PT0.1S"), Some(Duration::from_millis(100)));
    }

    #[test]
    fn rejects_invalid_durations() {
        for text in [
            "", "P", "PT", "30S", "PT30", "P1Y", "P1M", "PT1S2M", "PT.5S", "PT1.S", "PTS", "-PT1S",
            "PT1H1H", "P1W",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn reads_a_prefixed_queue_description() {
        let xml = r#"<a:entry xmlns:a="http://www.w3.org/2005/Atom"><a:content type="application/xml">
            <sb:QueueDescription xmlns:sb="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">
            <sb:LockDuration>PT0.5S</sb:LockDuration><sb:RequiresDuplicateDetection>true</sb:RequiresDuplicateDetection>
            <sb:MaxDeliveryCount> 3 </sb:MaxDeliveryCount><sb:MaxSizeInMegabytes>1024</sb:MaxSizeInMegabytes>
            </sb:QueueDescription></a:content></a:entry>"#;
        let d = parse_queue_description(xml).unwrap();
        assert_eq!(
            d,
            QueueDescription {
                lock_duration: Some(Duration::from_millis(500)),
                requires_duplicate_detection: Some(true),
                duplicate_detection_window: None,
                max_delivery_count: Some(3),
            }
        );
        assert_eq!(
            parse_queue_description("").unwrap(),
            QueueDescription::default()
        );
    }

    #[test]
    fn names_the_element_that_is_out_of_range() {
        let with = |inner: &str| {
            parse_queue_description(&format!(
                "<entry><content><QueueDescription>{inner}</QueueDescription></content></entry>"
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(with("<LockDuration>PT6M</LockDuration>").contains("LockDuration"));
        assert!(with("<LockDuration>PT0.05S</LockDuration>").contains("LockDuration"));
        assert!(
            with("<DuplicateDetectionHistoryTimeWindow>P8D</DuplicateDetectionHistoryTimeWindow>")
                .contains("DuplicateDetectionHistoryTimeWindow")
        );
        assert!(with("<MaxDeliveryCount>0</MaxDeliveryCount>").contains("MaxDeliveryCount"));
        assert!(with("<MaxDeliveryCount>-1</MaxDeliveryCount>").contains("MaxDeliveryCount"));
        assert!(
            with("<RequiresDuplicateDetection>yes</RequiresDuplicateDetection>")
                .contains("RequiresDuplicateDetection")
        );
        assert_eq!(
            parse_queue_description("<entry/>"),
            Err(AtomError::NoQueueDescription)
        );
        assert!(matches!(
            parse_queue_description("<entry><QueueDescription></entry>"),
            Err(AtomError::Malformed(_))
        ));
    }
}
