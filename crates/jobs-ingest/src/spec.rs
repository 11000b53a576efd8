//! The parameters of an ingest request, checked against the source's configuration:
//!
//! ```json
//! {"source": "crm", "from_id": 1, "to_id": 50000}                        // partition = "id"
//! {"source": "crm", "modified_since": "2026-01-01T00:00:00Z",
//!  "modified_before": "2026-01-02T00:00:00Z"}                            // partition = "time"
//! ```
//!
//! Only the source's *name* is stored with the job: its URL and credential stay in the
//! configuration. `modified_before` defaults to the submission time (whole seconds), stored,
//! so that planning a redelivered request gives the same windows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use jobs_core::config::{Partition, Sources};
use jobs_sdk::jobtype::ParamsError;

/// The stored parameters of an ingest job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSpec {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<u64>,
    /// Absent: up to the source's maximum id at planning time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_before: Option<DateTime<Utc>>,
}

const FIELDS: [&str; 5] = [
    "source",
    "from_id",
    "to_id",
    "modified_since",
    "modified_before",
];

fn invalid(field: &str, message: impl Into<String>) -> ParamsError {
    ParamsError::invalid(format!("ingest.{field}"), message)
}

fn id(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Option<u64>, ParamsError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a whole number of at least 1")),
    }
}

fn time(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, ParamsError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid(field, "must be an RFC 3339 date-time with a time zone")),
        Some(_) => Err(invalid(field, "must be an RFC 3339 date-time string")),
    }
}

/// The JSON Schema of an ingest request (the object under `ingest`), for the API's OpenAPI
/// document. [`IngestSpec::parse`] decides against the source's configuration (which of
/// the two ranges it takes); this describes it.
pub fn request_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "description": "The records of a configured source API, by id range or by modification-time window.",
        "examples": [
            {"source": "crm", "from_id": 1, "to_id": 50000},
            {"source": "crm", "modified_since": "2026-01-01T00:00:00Z", "modified_before": "2026-01-02T00:00:00Z"}
        ],
        "required": ["source"],
        "additionalProperties": false,
        "properties": {
            "source": {"type": "string", "description": "A source of the configuration ([sources.NAME])."},
            "from_id": {"type": ["integer", "null"], "minimum": 1, "description": "An id-partitioned source: the first id (1 when absent)."},
            "to_id": {"type": ["integer", "null"], "minimum": 1, "description": "An id-partitioned source: the last id (the source's highest at planning time when absent)."},
            "modified_since": {"type": ["string", "null"], "format": "date-time", "description": "A time-partitioned source: the window's start (required for it)."},
            "modified_before": {"type": ["string", "null"], "format": "date-time", "description": "A time-partitioned source: the window's end (the submission time when absent)."}
        }
    })
}

impl IngestSpec {
    /// Checks `params` (the object under `ingest`) against `sources`, with `now` the
    /// submission time.
    pub fn parse(
        params: &Value,
        sources: &Sources,
        now: DateTime<Utc>,
    ) -> Result<Self, ParamsError> {
        let obj = params
            .as_object()
            .ok_or_else(|| ParamsError::invalid("ingest", "must be an object"))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                k,
                format!("is not a known field (known: {})", FIELDS.join(", ")),
            ));
        }
        let source = match obj.get("source") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("source", "must be a string")),
            None => return Err(invalid("source", "is required")),
        };
        let Some(cfg) = sources.get(&source) else {
            let known: Vec<&str> = sources.keys().map(String::as_str).collect();
            return Err(invalid(
                "source",
                format!("unknown source `{source}` (known: {})", known.join(", ")),
            ));
        };
        let spec = Self {
            source,
            from_id: id(obj, "from_id")?,
            to_id: id(obj, "to_id")?,
            modified_since: time(obj, "modified_since")?,
            modified_before: time(obj, "modified_before")?,
        };
        match cfg.partition {
            Partition::Id => spec.check_ids(cfg.partition_size, cfg.max_partitions),
            Partition::Time => spec.check_window(cfg.window_secs, cfg.max_partitions, now),
        }
    }

    fn check_ids(self, size: u64, max_partitions: u32) -> Result<Self, ParamsError> {
        for field in ["modified_since", "modified_before"] {
            if self.field_is_set(field) {
                return Err(invalid(
                    field,
                    format!(
                        "source `{}` is partitioned by id: give from_id/to_id",
                        self.source
                    ),
                ));
            }
        }
        let from = self.from_id.unwrap_or(1);
        if let Some(to) = self.to_id {
            if to < from {
                return Err(invalid("to_id", "must be at least from_id"));
            }
            let parts = (to - from) / size + 1;
            if parts > u64::from(max_partitions) {
                return Err(invalid(
                    "to_id",
                    format!(
                        "the range makes {parts} partitions of {size} ids; the source allows {max_partitions}"
                    ),
                ));
            }
        }
        Ok(Self {
            from_id: Some(from),
            ..self
        })
    }

    fn check_window(
        self,
        window_secs: u64,
        max_partitions: u32,
        now: DateTime<Utc>,
    ) -> Result<Self, ParamsError> {
        for field in ["from_id", "to_id"] {
            if self.field_is_set(field) {
                return Err(invalid(
                    field,
                    format!(
                        "source `{}` is partitioned by time: give modified_since/modified_before",
                        self.source
                    ),
                ));
            }
        }
        let since = self
            .modified_since
            .ok_or_else(|| invalid("modified_since", "is required for this source"))?;
        // Whole seconds: a stored default must plan the same windows every time.
        let before = self
            .modified_before
            .unwrap_or_else(|| DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now));
        if before <= since {
            return Err(invalid(
                "modified_before",
                "must be later than modified_since",
            ));
        }
        let span = u64::try_from((before - since).num_seconds()).unwrap_or(u64::MAX);
        let parts = span.div_ceil(window_secs).max(1);
        if parts > u64::from(max_partitions) {
            return Err(invalid(
                "modified_since",
                format!(
                    "the interval makes {parts} windows of {window_secs} s; the source allows {max_partitions}"
                ),
            ));
        }
        Ok(Self {
            modified_before: Some(before),
            ..self
        })
    }

    fn field_is_set(&self, field: &str) -> bool {
        match field {
            "from_id" => self.from_id.is_some(),
            "to_id" => self.to_id.is_some(),
            "modified_since" => self.modified_since.is_some(),
            "modified_before" => self.modified_before.is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::config::SourceConfig;
    use serde_json::json;

    fn sources(partition: &str) -> Sources {
        use figment::providers::Format;
        let cfg: SourceConfig = figment::Figment::from(figment::providers::Toml::string(&format!(
            "base_url = \"http://127.0.0.1:9\"\npartition = \"{partition}\"\npartition_size = 100\nwindow_secs = 3600\nmax_partitions = 10"
        )))
        .extract()
        .unwrap();
        [("crm".to_owned(), cfg)].into_iter().collect()
    }

    fn field_of(e: ParamsError) -> String {
        match e {
            ParamsError::Invalid(i) => i.field,
            other => panic!("{other}"),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00.750Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn id_requests_are_normalized() {
        let s = IngestSpec::parse(
            &json!({"source": "crm", "to_id": 1000}),
            &sources("id"),
            now(),
        )
        .unwrap();
        assert_eq!((s.from_id, s.to_id), (Some(1), Some(1000)));
        assert!(s.modified_since.is_none());
        let stored = serde_json::to_value(&s).unwrap();
        assert_eq!(
            stored,
            json!({"source": "crm", "from_id": 1, "to_id": 1000})
        );
    }

    #[test]
    fn time_requests_default_their_end_to_the_submission_second() {
        let s = IngestSpec::parse(
            &json!({"source": "crm", "modified_since": "2026-03-01T09:00:00Z"}),
            &sources("time"),
            now(),
        )
        .unwrap();
        assert_eq!(
            s.modified_before.unwrap().to_rfc3339(),
            "2026-03-01T12:00:00+00:00"
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let ids = sources("id");
        let times = sources("time");
        let cases = [
            (json!({}), &ids, "ingest.source"),
            (json!({"source": "nope"}), &ids, "ingest.source"),
            (json!({"source": "crm", "extra": 1}), &ids, "ingest.extra"),
            (
                json!({"source": "crm", "from_id": 0}),
                &ids,
                "ingest.from_id",
            ),
            (
                json!({"source": "crm", "from_id": 9, "to_id": 3}),
                &ids,
                "ingest.to_id",
            ),
            (
                json!({"source": "crm", "to_id": 1001}),
                &ids,
                "ingest.to_id",
            ),
            (
                json!({"source": "crm", "modified_since": "2026-01-01T00:00:00Z"}),
                &ids,
                "ingest.modified_since",
            ),
            (json!({"source": "crm"}), &times, "ingest.modified_since"),
            (
                json!({"source": "crm", "modified_since": "yesterday"}),
                &times,
                "ingest.modified_since",
            ),
            (
                json!({"source": "crm", "modified_since": "2026-03-01T00:00:00Z",
                       "modified_before": "2026-02-01T00:00:00Z"}),
                &times,
                "ingest.modified_before",
            ),
            (
                json!({"source": "crm", "modified_since": "2026-01-01T00:00:00Z"}),
                &times,
                "ingest.modified_since",
            ),
            (
                json!({"source": "crm", "from_id": 1}),
                &times,
                "ingest.from_id",
            ),
        ];
        for (params, sources, field) in cases {
            let err = IngestSpec::parse(&params, sources, now()).unwrap_err();
            assert_eq!(field_of(err), field, "{params}");
        }
        // Exactly the most partitions allowed is fine.
        IngestSpec::parse(&json!({"source": "crm", "to_id": 1000}), &ids, now()).unwrap();
    }
}
