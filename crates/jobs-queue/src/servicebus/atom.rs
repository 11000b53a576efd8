//! The formats of Service Bus's REST API: queue descriptions in Atom XML, ISO 8601
//! durations, and RFC 1123 times in `BrokerProperties`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use quick_xml::events::Event;

use crate::QueueSpec;

/// The Atom entry that creates or updates a queue. The elements keep the order of
/// Service Bus's `QueueDescription` contract, which the service requires.
pub fn queue_description(spec: &QueueSpec) -> String {
    let dedupe = !spec.dedupe_window.is_zero();
    let window = if dedupe {
        format!(
            "<DuplicateDetectionHistoryTimeWindow>{}</DuplicateDetectionHistoryTimeWindow>",
            iso8601(spec.dedupe_window)
        )
    } else {
        String::new()
    };
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><LockDuration>{lock}</LockDuration><RequiresDuplicateDetection>{dedupe}</RequiresDuplicateDetection>{window}<MaxDeliveryCount>{max}</MaxDeliveryCount></QueueDescription></content></entry>"#,
        lock = iso8601(spec.lock_duration),
        max = spec.max_delivery_count,
    )
}

/// What a queue's description says, as far as this transport reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Description {
    pub lock_duration: Option<Duration>,
    pub requires_duplicate_detection: Option<bool>,
    pub dedupe_window: Option<Duration>,
    pub max_delivery_count: Option<u32>,
    pub active: u64,
    pub scheduled: u64,
    pub dead_lettered: u64,
}

/// Reads a `GET /{queue}` answer. `None` when it holds no queue description (Service Bus
/// answers a missing entity with an empty feed).
pub fn parse_description(xml: &str) -> Result<Option<Description>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut found, mut d, mut current) = (false, Description::default(), None::<String>);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                found |= name == "QueueDescription";
                current = Some(name);
            }
            Ok(Event::Text(t)) => {
                let Some(name) = current.as_deref() else {
                    continue;
                };
                let text = t.decode().map_err(|e| e.to_string())?;
                let text = text.trim();
                let count = || {
                    text.parse::<u64>()
                        .map_err(|_| format!("{name} is not a count: {text:?}"))
                };
                match name {
                    "LockDuration" => d.lock_duration = Some(parse_iso8601(text)?),
                    "RequiresDuplicateDetection" => {
                        d.requires_duplicate_detection = Some(text == "true");
                    }
                    "DuplicateDetectionHistoryTimeWindow" => {
                        d.dedupe_window = Some(parse_iso8601(text)?);
                    }
                    "MaxDeliveryCount" => {
                        let n = text
                            .parse()
                            .map_err(|_| format!("MaxDeliveryCount is not a count: {text:?}"))?;
                        d.max_delivery_count = Some(n);
                    }
                    "ActiveMessageCount" => d.active = count()?,
                    "ScheduledMessageCount" => d.scheduled = count()?,
                    "DeadLetterMessageCount" => d.dead_lettered = count()?,
                    _ => {}
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("malformed XML: {e}")),
        }
    }
    Ok(found.then_some(d))
}

/// `PT30S`, `PT0.25S`, `PT10M`: whole seconds, with milliseconds when there are any.
pub fn iso8601(d: Duration) -> String {
    let millis = d.as_millis();
    if millis.is_multiple_of(1000) {
        format!("PT{}S", millis / 1000)
    } else {
        let s = format!("{}.{:03}", millis / 1000, millis % 1000);
        format!("PT{}S", s.trim_end_matches('0'))
    }
}

/// Parses `PnDTnHnMnS` durations (days and smaller; seconds may have a fraction).
pub fn parse_iso8601(s: &str) -> Result<Duration, String> {
    let bad = || format!("not an ISO 8601 duration: {s:?}");
    let rest = s.strip_prefix('P').ok_or_else(bad)?;
    let (mut total, mut in_time, mut number, mut parts) = (0f64, false, String::new(), 0);
    for c in rest.chars() {
        match c {
            'T' if number.is_empty() => in_time = true,
            '0'..='9' | '.' => number.push(c),
            unit => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                number.clear();
                parts += 1;
                total += n * match (unit, in_time) {
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return Err(bad()),
                };
            }
        }
    }
    if parts == 0 || !number.is_empty() || !total.is_finite() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub fn parse_rfc1123(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc2822(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("bad time {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueueName;

    #[test]
    fn durations_round_trip() {
        for (d, s) in [
            (Duration::from_secs(30), "PT30S"),
            (Duration::from_millis(250), "PT0.25S"),
            (Duration::from_millis(1500), "PT1.5S"),
            (Duration::from_secs(600), "PT600S"),
        ] {
            assert_eq!(iso8601(d), s);
            assert_eq!(parse_iso8601(s).unwrap(), d);
        }
        assert_eq!(parse_iso8601("PT1M").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_iso8601("P1DT2H").unwrap(),
            Duration::from_secs(93_600)
        );
        for bad in ["30S", "PT", "PTxS", "PT5", "P1H"] {
            assert!(parse_iso8601(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_written_in_contract_order_and_read_back() {
        let spec = QueueSpec {
            name: QueueName::parse("q").unwrap(),
            lock_duration: Duration::from_secs(30),
            max_delivery_count: 7,
            dedupe_window: Duration::from_secs(600),
        };
        let xml = queue_description(&spec);
        let order = [
            "<LockDuration>PT30S<",
            "<RequiresDuplicateDetection>true<",
            "<DuplicateDetectionHistoryTimeWindow>PT600S<",
            "<MaxDeliveryCount>7<",
        ]
        .map(|s| {
            xml.find(s)
                .unwrap_or_else(|| panic!("{s} missing in {xml}"))
        });
        assert!(order.is_sorted(), "{xml}");

        let answer = r#"<entry xmlns="http://www.w3.org/2005/Atom"><title type="text">q</title><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><LockDuration>PT1M</LockDuration><RequiresDuplicateDetection>false</RequiresDuplicateDetection><CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>5</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>2</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>1</d2p1:ScheduledMessageCount></CountDetails></QueueDescription></content></entry>"#;
        assert_eq!(
            parse_description(answer).unwrap(),
            Some(Description {
                lock_duration: Some(Duration::from_secs(60)),
                requires_duplicate_detection: Some(false),
                dedupe_window: None,
                max_delivery_count: None,
                active: 5,
                scheduled: 1,
                dead_lettered: 2,
            })
        );
        let empty = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services</title></feed>"#;
        assert_eq!(parse_description(empty).unwrap(), None);
    }

    #[test]
    fn times_are_rfc1123() {
        let t = parse_rfc1123("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(rfc1123(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
