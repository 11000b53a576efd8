//! Configuration sections of the services: API, auth, blob store, downloads, exports,
//! imports, uploads, workers, notifier, schedules, and the dataset catalog.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Largest file `POST /v1/uploads` accepts (streamed to the blob store, so this bounds
    /// storage, not memory).
    pub max_upload_bytes: u64,
    /// How long the URL of a direct upload (`POST /v1/uploads/direct`) accepts writes.
    pub upload_link_ttl_secs: u64,
    pub public_url: String,
    /// Seconds a client has to send a request's headers (on a new connection, and between
    /// requests on a kept-alive one); then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may go without sending a byte (a slow upload that keeps
    /// sending is not cut off); then the request fails.
    pub body_idle_timeout_secs: u64,
    /// Connections served at once by this process; one more is closed on accept.
    pub max_connections: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub dev_api_key: SecretString,
    pub dev_tenant: String,
    pub dev_webhook_secret: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    Local,
    Azure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    pub backend: BlobBackend,
    pub root: PathBuf,
    pub azure_connection_string: SecretString,
    pub azure_account: String,
    pub azure_access_key: SecretString,
    pub azure_sas_token: SecretString,
    pub azure_container: String,
    pub azure_endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadConfig {
    pub signing_key: SecretString,
    pub link_ttl_secs: u64,
    pub direct_links: bool,
}

impl ApiConfig {
    pub fn upload_link_ttl(&self) -> Duration {
        Duration::from_secs(self.upload_link_ttl_secs)
    }
}

impl DownloadConfig {
    pub fn link_ttl(&self) -> Duration {
        Duration::from_secs(self.link_ttl_secs)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub default_chunk_rows: u32,
    pub min_chunk_rows: u32,
    pub max_chunk_rows: u32,
    pub exact_plan_max_rows: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Bytes of the uploaded file per work item (cut at the next record boundary).
    pub chunk_bytes: u64,
}

/// How long uploads are kept. The enqueuers sweep; the API shows each upload's expiry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// Hours after it was recorded that an upload is deleted (unless an unfinished import
    /// reads it or a schedule names it). 0 keeps uploads until they are deleted by hand.
    pub retention_hours: u64,
    /// How often each enqueuer looks for expired uploads.
    pub sweep_interval_secs: u64,
}

impl UploadsConfig {
    /// How long an upload is kept; `None` for ever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_hours > 0).then(|| Duration::from_secs(self.retention_hours * 3600))
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub retry_base_ms: u64,
    pub retry_cap_secs: u64,
}

impl WorkerConfig {
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn retry_cap(&self) -> Duration {
        Duration::from_secs(self.retry_cap_secs)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub timeout_secs: u64,
    pub allow_private_networks: bool,
    pub retry_schedule_secs: Vec<u64>,
}

impl NotifierConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.retry_schedule_secs
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulesConfig {
    pub tick_interval_ms: u64,
    pub allow_sub_minute: bool,
}

impl SchedulesConfig {
    /// How often each enqueuer looks for due schedules.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.tick_interval_ms)
    }
}

/// One exportable dataset: a table or view and the identifiers a request may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub table: String,
    pub key: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub filterable: Vec<String>,
    /// CSV exports of this dataset neutralise spreadsheet formulas unless a request says
    /// otherwise (`export.neutralize_formulas`): a text cell beginning with `=`, `+`, `-`,
    /// `@`, a tab or a carriage return gets a leading `'`. Off by default: the file is then
    /// byte for byte what `COPY` prints.
    #[serde(default)]
    pub neutralize_formulas: bool,
}

pub type Datasets = BTreeMap<String, DatasetConfig>;

/// A SQL identifier as Offload accepts it in configuration: letters, digits and `_`, not
/// starting with a digit, at most 63 bytes (Postgres's limit). Anything else is refused at
/// start-up, so identifiers can be quoted and spliced into SQL safely.
pub fn is_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// `table` or `schema.table`, each part an identifier.
pub fn is_table_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| is_identifier(p))
}
