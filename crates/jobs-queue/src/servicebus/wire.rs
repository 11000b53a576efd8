//! What travels on the wire: the messages receive answers carry, their broker and
//! application properties, batch entries, and the copies this transport makes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    CARRIED_DELIVERIES, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, MAX_BATCH_BYTES, ORIGINAL_ID,
    atom,
};
use crate::{DeadLetter, OutgoingMessage, QueueError};

/// A message as a receive answer carries it.
#[derive(Debug)]
pub(super) struct Delivered {
    pub(super) sequence: i64,
    pub(super) lock_token: Option<Uuid>,
    pub(super) message_id: String,
    pub(super) body: Bytes,
    pub(super) properties: BTreeMap<String, String>,
    pub(super) delivery_count: u32,
    pub(super) enqueued_at: DateTime<Utc>,
    pub(super) locked_until: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct BrokerProperties {
    #[serde(default)]
    pub(super) delivery_count: u32,
    #[serde(default)]
    pub(super) enqueued_time_utc: Option<String>,
    #[serde(default)]
    pub(super) lock_token: Option<Uuid>,
    #[serde(default)]
    pub(super) locked_until_utc: Option<String>,
    #[serde(default)]
    pub(super) message_id: String,
    pub(super) sequence_number: i64,
}

/// Undoes what [`ServiceBusTransport::abandon`] and `resubmit_dead_letters` put into a
/// copy's properties.
pub(super) fn restore(
    message_id: String,
    delivery_count: u32,
    mut properties: BTreeMap<String, String>,
) -> (String, u32, BTreeMap<String, String>) {
    let id = properties.remove(ORIGINAL_ID).unwrap_or(message_id);
    let carried = properties
        .remove(CARRIED_DELIVERIES)
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(0);
    (id, delivery_count.saturating_add(carried), properties)
}

pub(super) fn to_dead_letter(d: Delivered) -> DeadLetter {
    let mut properties = d.properties;
    let reason = properties.remove(DEAD_LETTER_REASON).unwrap_or_default();
    let description = properties.remove(DEAD_LETTER_DESCRIPTION);
    let (message_id, delivery_count, properties) =
        restore(d.message_id, d.delivery_count, properties);
    DeadLetter {
        sequence: d.sequence,
        message_id,
        body: d.body,
        properties,
        delivery_count,
        enqueued_at: d.enqueued_at,
        reason,
        description,
        // Service Bus keeps no dead-lettering time; the dead letter's enqueue time is the
        // closest it tells.
        dead_lettered_at: d.enqueued_at,
    }
}

pub(super) fn broker_properties(
    headers: &header::HeaderMap,
) -> Result<BrokerProperties, QueueError> {
    let raw = headers
        .get("brokerproperties")
        .ok_or_else(|| QueueError::Broker("an answer carried no BrokerProperties".into()))?;
    serde_json::from_slice(raw.as_bytes())
        .map_err(|e| QueueError::Broker(format!("BrokerProperties: {e}")))
}

/// Application properties come as headers whose value is a JSON string (`"…"`).
pub(super) fn application_properties(headers: &header::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::ETAG)
        .filter_map(|(name, value)| {
            let v = value.to_str().ok()?;
            if v.len() < 2 || !v.starts_with('"') || !v.ends_with('"') {
                return None;
            }
            Some((
                name.as_str().to_owned(),
                serde_json::from_str::<String>(v).ok()?,
            ))
        })
        .collect()
}

/// One message of a batch request.
pub(super) fn batch_entry(m: &OutgoingMessage) -> Result<serde_json::Value, QueueError> {
    m.validate()?;
    let body = std::str::from_utf8(&m.body).map_err(|_| QueueError::InvalidMessage {
        message_id: m.message_id.clone(),
        problem: "the Service Bus transport carries UTF-8 bodies only".into(),
    })?;
    let mut broker = serde_json::json!({ "MessageId": m.message_id });
    if let Some(at) = m.scheduled_at {
        // One-second resolution: round up, never deliver early.
        let secs = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
        let at = DateTime::from_timestamp(secs, 0).unwrap_or(at);
        broker["ScheduledEnqueueTimeUtc"] = atom::rfc1123(at).into();
    }
    Ok(serde_json::json!({
        "Body": body,
        "BrokerProperties": broker,
        "UserProperties": m.properties,
    }))
}

/// A batch entry as sent; refused when, encoded, it could not fit a batch on its own.
pub(super) fn encoded_entry(m: &OutgoingMessage) -> Result<Vec<u8>, QueueError> {
    let bytes = serde_json::to_vec(&batch_entry(m)?).map_err(|e| QueueError::InvalidMessage {
        message_id: m.message_id.clone(),
        problem: e.to_string(),
    })?;
    if bytes.len() + 2 > MAX_BATCH_BYTES {
        return Err(QueueError::InvalidMessage {
            message_id: m.message_id.clone(),
            problem: format!(
                "encoded for Service Bus it is {} bytes, over the {MAX_BATCH_BYTES}-byte request limit",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_restore_the_original_id_and_count() {
        let props = BTreeMap::from([
            (ORIGINAL_ID.to_owned(), "job:7".to_owned()),
            (CARRIED_DELIVERIES.to_owned(), "3".to_owned()),
            ("traceparent".to_owned(), "00-x".to_owned()),
        ]);
        let (id, count, rest) = restore("copy-id".into(), 1, props);
        assert_eq!((id.as_str(), count), ("job:7", 4));
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["traceparent"]);
    }

    #[test]
    fn batch_entries_refuse_binary_bodies_and_round_scheduled_times_up() {
        let binary = OutgoingMessage::new("b", vec![0xff, 0xfe]);
        assert!(matches!(
            batch_entry(&binary),
            Err(QueueError::InvalidMessage { .. })
        ));
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.200Z")
            .unwrap()
            .to_utc();
        let e = batch_entry(&OutgoingMessage::new("s", "x").scheduled_at(at)).unwrap();
        assert_eq!(
            e["BrokerProperties"]["ScheduledEnqueueTimeUtc"],
            "Sat, 21 Nov 2026 10:00:01 GMT"
        );
    }
}
