//! The data plane's wire format: how messages arrive (a raw body plus `BrokerProperties` and
//! property headers, or a JSON batch) and how they leave (body plus headers).
//!
//! Mirrors the Service Bus REST API: broker properties travel as a JSON object in the
//! `BrokerProperties` header, each application ("user") property as its own header whose
//! value is a JSON literal, and times as RFC 1123 dates.

use axum::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::state::{NewMessage, StoredMessage};
use crate::time::{format_rfc1123, parse_rfc1123};

/// The content type that marks a send as a JSON batch.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";

/// The header carrying broker properties, both ways.
pub const BROKER_PROPERTIES: &str = "brokerproperties";

/// What the real service reports for a message without a time-to-live
/// (`TimeSpan.MaxValue` in seconds, 922337203685.47754, as the nearest `f64`).
const TIME_TO_LIVE_MAX: f64 = 922_337_203_685.477_5;

/// Headers the double writes itself, or that carry transport meaning, so user properties with
/// these names are not echoed back as headers.
const RESERVED_HEADERS: &[&str] = &[
    BROKER_PROPERTIES,
    "connection",
    "content-length",
    "content-type",
    "date",
    "keep-alive",
    "location",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `BrokerProperties` as sent: the keys the double acts on; others are ignored.
#[derive(Debug, Default, Deserialize)]
struct IncomingBrokerProperties {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "ScheduledEnqueueTimeUtc")]
    scheduled_enqueue_time_utc: Option<String>,
}

/// One element of a JSON batch.
#[derive(Debug, Deserialize)]
struct BatchItem {
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "BrokerProperties")]
    broker_properties: Option<IncomingBrokerProperties>,
    #[serde(rename = "UserProperties")]
    user_properties: Option<Map<String, Value>>,
}

/// Whether the request's content type says the body is a JSON batch.
pub fn is_batch(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE))
}

/// Parses a batch body: a JSON array of `{"Body", "BrokerProperties", "UserProperties"}`.
pub fn parse_batch(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let items: Vec<BatchItem> =
        serde_json::from_slice(body).map_err(|e| format!("invalid batch: {e}"))?;
    items
        .into_iter()
        .map(|item| {
            let broker = item.broker_properties.unwrap_or_default();
            let user_properties = item
                .user_properties
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| Ok((key, property_text(value)?)))
                .collect::<Result<_, String>>()?;
            Ok(NewMessage {
                message_id: message_id(broker.message_id)?,
                body: Bytes::from(item.body),
                content_type: None,
                user_properties,
                scheduled_enqueue_time: scheduled_time(broker.scheduled_enqueue_time_utc)?,
            })
        })
        .collect()
}

/// Parses a single-message send: the body is the message, `BrokerProperties` (optional)
/// gives its id and schedule, and every header whose value is a JSON string literal is a
/// user property.
pub fn parse_single(headers: &HeaderMap, body: Bytes) -> Result<NewMessage, String> {
    let broker = match headers.get(BROKER_PROPERTIES) {
        None => IncomingBrokerProperties::default(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or("the BrokerProperties header is not a JSON object of broker properties")?,
    };
    let mut user_properties = Vec::new();
    for (name, value) in headers {
        let Ok(text) = value.to_str() else { continue };
        if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
            let value: String = serde_json::from_str(text)
                .map_err(|_| format!("the {name} header is not a valid JSON string"))?;
            user_properties.push((name.as_str().to_owned(), value));
        }
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Ok(NewMessage {
        message_id: message_id(broker.message_id)?,
        body,
        content_type,
        user_properties,
        scheduled_enqueue_time: scheduled_time(broker.scheduled_enqueue_time_utc)?,
    })
}

/// Strings are kept as they are; numbers and booleans as their JSON text.
fn property_text(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(_) | Value::Bool(_) => Ok(value.to_string()),
        _ => Err("UserProperties values must be strings, numbers or booleans".to_owned()),
    }
}

/// The given id, or a fresh one as the real client libraries would assign.
fn message_id(given: Option<String>) -> Result<String, String> {
    match given {
        Some(id) if id.is_empty() => Err("MessageId must not be empty".to_owned()),
        Some(id) => Ok(id),
        None => Ok(Uuid::new_v4().simple().to_string()),
    }
}

fn scheduled_time(given: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    given
        .map(|text| {
            parse_rfc1123(&text)
                .ok_or_else(|| format!("ScheduledEnqueueTimeUtc {text:?} is not an RFC 1123 date"))
        })
        .transpose()
}

/// The `BrokerProperties` header of a received (or renewed) message.
pub fn broker_properties(message: &StoredMessage) -> HeaderValue {
    let mut properties = Map::new();
    properties.insert("DeliveryCount".into(), message.delivery_count.into());
    properties.insert(
        "EnqueuedSequenceNumber".into(),
        message.enqueued_sequence_number.into(),
    );
    properties.insert(
        "EnqueuedTimeUtc".into(),
        format_rfc1123(message.enqueued_at).into(),
    );
    if let Some(lock) = message.lock {
        properties.insert(
            "LockToken".into(),
            lock.token.hyphenated().to_string().into(),
        );
        properties.insert(
            "LockedUntilUtc".into(),
            format_rfc1123(lock.locked_until).into(),
        );
    }
    properties.insert("MessageId".into(), message.message_id.clone().into());
    if let Some(at) = message.scheduled_enqueue_time {
        properties.insert("ScheduledEnqueueTimeUtc".into(), format_rfc1123(at).into());
    }
    properties.insert("SequenceNumber".into(), message.sequence_number.into());
    properties.insert("State".into(), "Active".into());
    properties.insert("TimeToLive".into(), TIME_TO_LIVE_MAX.into());
    header_value(&Value::Object(properties))
}

/// One header per user property whose key is a usable header name, valued as a JSON string.
pub fn property_headers(
    message: &StoredMessage,
) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    message.user_properties.iter().filter_map(|(key, value)| {
        let name = HeaderName::from_bytes(key.as_bytes()).ok()?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return None;
        }
        Some((name, header_value(&Value::String(value.clone()))))
    })
}

/// JSON text made safe for a header: characters outside visible ASCII (which can only occur
/// inside JSON strings) are written as `\uXXXX` escapes.
fn header_value(value: &Value) -> HeaderValue {
    let json = value.to_string();
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            ascii.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    HeaderValue::from_str(&ascii).unwrap_or_else(|_| unreachable!("escaped JSON is visible ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_batch_with_optional_parts() {
        let body = br#"[
            {"Body": "one", "BrokerProperties": {"MessageId": "m1", "Label": "x",
             "ScheduledEnqueueTimeUtc": "Sun, 06 Nov 1994 08:49:37 GMT"},
             "UserProperties": {"traceparent": "00-abc-01", "n": 3, "ok": true}},
            {"Body": "two"}
        ]"#;
        let batch = parse_batch(body).unwrap();
        assert_eq!(batch[0].message_id, "m1");
        assert_eq!(batch[0].body, Bytes::from("one"));
        assert!(batch[0].scheduled_enqueue_time.is_some());
        let mut props = batch[0].user_properties.clone();
        props.sort();
        assert_eq!(
            props,
            [("n", "3"), ("ok", "true"), ("traceparent", "00-abc-01")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(batch[1].message_id.len(), 32, "a fresh simple uuid");
    }

    #[test]
    fn refuses_malformed_batches() {
        for body in [
            &b"{}"[..],
            b"[{\"Body\": 1}]",
            b"[{}]",
            b"[{\"Body\": \"a\", \"UserProperties\": {\"k\": [1]}}]",
            b"[{\"Body\": \"a\", \"BrokerProperties\": {\"ScheduledEnqueueTimeUtc\": \"soon\"}}]",
            b"not json",
        ] {
            assert!(
                parse_batch(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn single_message_properties_come_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            BROKER_PROPERTIES,
            HeaderValue::from_static(r#"{"MessageId":"m"}"#),
        );
        headers.insert("traceparent", HeaderValue::from_static(r#""00-\"q\"-01""#));
        headers.insert("x-plain", HeaderValue::from_static("not a property"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let m = parse_single(&headers, Bytes::from("hi")).unwrap();
        assert_eq!(m.message_id, "m");
        assert_eq!(
            m.user_properties,
            vec![("traceparent".to_owned(), "00-\"q\"-01".to_owned())]
        );
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn header_values_escape_non_ascii() {
        assert_eq!(
            header_value(&Value::String("é😀\u{7f}".into())),
            HeaderValue::from_static(r#""\u00e9\ud83d\ude00\u007f""#)
        );
    }
}
