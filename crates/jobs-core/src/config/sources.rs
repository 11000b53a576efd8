//! `[sources.<name>]`: the HTTP APIs ingest jobs read from.
//!
//! A request names a source; everything about reaching it — its URL, its credential, how it
//! pages and how it is split into work items — comes only from here, so a tenant can never
//! point Offload at an arbitrary host or read another source's credential.
//!
//! The credential is a *reference* (`env:NAME` or `file:/path`), resolved once when the
//! configuration is loaded ([`SourceConfig::resolve_secret`]); the value lives in a
//! [`SecretString`] that `Debug` prints as `[REDACTED]` and that never enters a job's
//! parameters, a message or a log line. Every key has a default equal to the documented
//! `[sources.mock]` entry of `defaults.toml`, so a source needs only its `base_url`.

mod check;

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The configured sources, by name.
pub type Sources = BTreeMap<String, SourceConfig>;

/// How a source's records are split into work items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    /// Ranges of `partition_size` ids, up to the source's maximum id.
    Id,
    /// Windows of `window_secs` on the modification time, between the job's bounds.
    Time,
}

/// How a source hands out the pages of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pagination {
    /// `offset` + `limit`; a short page is the last.
    Offset,
    /// `page` (from 1) + `per_page`; a short page is the last.
    Page,
    /// `cursor` + `limit`; no next cursor ends the partition.
    Cursor,
}

/// One source API. See `defaults.toml` for what each key means.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub base_url: String,
    #[serde(default = "d::records_path")]
    pub records_path: String,
    #[serde(default = "d::records_pointer")]
    pub records_pointer: String,
    #[serde(default = "d::auth_header")]
    pub auth_header: String,
    #[serde(default)]
    pub auth_scheme: String,
    /// The reference (`env:NAME`, `file:/path`), not the value.
    #[serde(default)]
    pub auth_secret: String,
    #[serde(default = "d::partition")]
    pub partition: Partition,
    #[serde(default = "d::partition_size")]
    pub partition_size: u64,
    #[serde(default = "d::max_id_path")]
    pub max_id_path: String,
    #[serde(default = "d::max_id_pointer")]
    pub max_id_pointer: String,
    #[serde(default = "d::window_secs")]
    pub window_secs: u64,
    #[serde(default = "d::max_partitions")]
    pub max_partitions: u32,
    #[serde(default = "d::from_id_param")]
    pub from_id_param: String,
    #[serde(default = "d::to_id_param")]
    pub to_id_param: String,
    #[serde(default = "d::since_param")]
    pub since_param: String,
    #[serde(default = "d::before_param")]
    pub before_param: String,
    #[serde(default = "d::pagination")]
    pub pagination: Pagination,
    #[serde(default = "d::page_size")]
    pub page_size: u32,
    #[serde(default = "d::offset_param")]
    pub offset_param: String,
    #[serde(default = "d::limit_param")]
    pub limit_param: String,
    #[serde(default = "d::page_param")]
    pub page_param: String,
    #[serde(default = "d::per_page_param")]
    pub per_page_param: String,
    #[serde(default = "d::cursor_param")]
    pub cursor_param: String,
    #[serde(default = "d::next_cursor_pointer")]
    pub next_cursor_pointer: String,
    #[serde(default = "d::connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    #[serde(default = "d::request_timeout_secs")]
    pub request_timeout_secs: u64,
    #[serde(default = "d::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "d::retry_base_ms")]
    pub retry_base_ms: u64,
    #[serde(default = "d::retry_cap_secs")]
    pub retry_cap_secs: u64,
    #[serde(default = "d::max_concurrency")]
    pub max_concurrency: u32,
    /// Whether `base_url` may reach loopback, private or link-local addresses (checked at
    /// every connection: what the name resolves to may change). Sources are the operator's
    /// and often internal, so `true` by default; `false` for a public API whose name
    /// should never lead inside the network.
    #[serde(default = "d::allow_private_networks")]
    pub allow_private_networks: bool,
    /// The credential's value, read by [`SourceConfig::resolve_secret`] at load time.
    #[serde(skip)]
    pub secret: Option<SecretString>,
}

/// Serde defaults: the values of `[sources.mock]` in `defaults.toml` (a test checks).
mod d {
    use super::{Pagination, Partition};

    pub fn records_path() -> String {
        "/records".into()
    }
    pub fn records_pointer() -> String {
        "/records".into()
    }
    pub fn auth_header() -> String {
        "Authorization".into()
    }
    pub fn partition() -> Partition {
        Partition::Id
    }
    pub fn partition_size() -> u64 {
        1000
    }
    pub fn max_id_path() -> String {
        "/records/max-id".into()
    }
    pub fn max_id_pointer() -> String {
        "/max_id".into()
    }
    pub fn window_secs() -> u64 {
        3600
    }
    pub fn max_partitions() -> u32 {
        10_000
    }
    pub fn from_id_param() -> String {
        "from_id".into()
    }
    pub fn to_id_param() -> String {
        "to_id".into()
    }
    pub fn since_param() -> String {
        "modified_since".into()
    }
    pub fn before_param() -> String {
        "modified_before".into()
    }
    pub fn pagination() -> Pagination {
        Pagination::Offset
    }
    pub fn page_size() -> u32 {
        100
    }
    pub fn offset_param() -> String {
        "offset".into()
    }
    pub fn limit_param() -> String {
        "limit".into()
    }
    pub fn page_param() -> String {
        "page".into()
    }
    pub fn per_page_param() -> String {
        "per_page".into()
    }
    pub fn cursor_param() -> String {
        "cursor".into()
    }
    pub fn next_cursor_pointer() -> String {
        "/next_cursor".into()
    }
    pub fn connect_timeout_secs() -> u64 {
        5
    }
    pub fn request_timeout_secs() -> u64 {
        30
    }
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn retry_base_ms() -> u64 {
        200
    }
    pub fn retry_cap_secs() -> u64 {
        30
    }
    pub fn max_concurrency() -> u32 {
        8
    }

    pub fn allow_private_networks() -> bool {
        true
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reference (`env:NAME`) is not secret; the value is never shown.
        f.debug_struct("SourceConfig")
            .field("base_url", &self.base_url)
            .field("records_path", &self.records_path)
            .field("auth_header", &self.auth_header)
            .field("auth_secret", &self.auth_secret)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("partition", &self.partition)
            .field("pagination", &self.pagination)
            .field("page_size", &self.page_size)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// A problem with one key of one source: `key` is the full dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    pub key: String,
    pub problem: String,
}

impl SourceConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn retry_cap(&self) -> Duration {
        Duration::from_secs(self.retry_cap_secs)
    }

    /// How long a concurrency permit is leased for: a request always ends (its timeout)
    /// well before its permit would be given to someone else.
    pub fn permit_lease(&self) -> Duration {
        self.request_timeout() * 2 + Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> SourceConfig {
        toml_source("base_url = \"http://127.0.0.1:8090\"")
    }

    fn toml_source(body: &str) -> SourceConfig {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(body))
            .extract()
            .unwrap()
    }

    #[test]
    fn a_base_url_is_enough() {
        let s = minimal();
        assert_eq!(s.validate("crm"), Ok(()));
        assert_eq!(s.pagination, Pagination::Offset);
        assert_eq!(s.partition, Partition::Id);
        assert!(s.permit_lease() > s.request_timeout());
    }

    /// The serde defaults are the documented `[sources.mock]` entry of `defaults.toml`.
    #[test]
    fn defaults_match_the_documented_entry() {
        let cfg: crate::Config = crate::config::Config::from_figment(figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(
                crate::config::DEFAULTS,
            ),
        ))
        .unwrap();
        let documented = &cfg.sources["mock"];
        let mut minimal = minimal();
        minimal.base_url = documented.base_url.clone();
        assert_eq!(format!("{documented:?}"), format!("{minimal:?}"));
        let all = |s: &SourceConfig| {
            (
                (
                    s.records_pointer.clone(),
                    s.auth_scheme.clone(),
                    s.partition_size,
                ),
                (s.max_id_pointer.clone(), s.window_secs, s.max_partitions),
                (
                    s.from_id_param.clone(),
                    s.to_id_param.clone(),
                    s.since_param.clone(),
                ),
                (
                    s.before_param.clone(),
                    s.offset_param.clone(),
                    s.limit_param.clone(),
                ),
                (
                    s.page_param.clone(),
                    s.per_page_param.clone(),
                    s.cursor_param.clone(),
                ),
                (s.next_cursor_pointer.clone(), s.connect_timeout_secs),
                (s.request_timeout_secs, s.max_attempts, s.retry_base_ms),
                (s.retry_cap_secs, s.max_id_path.clone()),
            )
        };
        assert_eq!(all(documented), all(&minimal));
    }

    #[test]
    fn problems_name_the_full_key() {
        let mut s = minimal();
        s.page_size = 0;
        assert_eq!(s.validate("crm").unwrap_err().key, "sources.crm.page_size");
        let mut s = minimal();
        s.base_url = "ftp://x".into();
        assert_eq!(s.validate("crm").unwrap_err().key, "sources.crm.base_url");
        let mut s = minimal();
        s.records_pointer = "records".into();
        assert_eq!(
            s.validate("crm").unwrap_err().key,
            "sources.crm.records_pointer"
        );
        assert!(minimal().validate("Bad Name").is_err());
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let path = std::env::temp_dir().join(format!("offload-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let mut s = minimal();
        s.auth_secret = format!("file:{}", path.display());
        s.resolve_secret("crm").unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(s.secret.as_ref().unwrap()),
            "s3cr3t-value"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_references_are_refused_without_echoing() {
        let mut s = minimal();
        s.auth_secret = "hunter2".into();
        let err = s.resolve_secret("crm").unwrap_err();
        assert_eq!(err.key, "sources.crm.auth_secret");
        assert!(!err.problem.contains("hunter2"), "{}", err.problem);
        s.auth_secret = "env:OFFLOAD_TEST_SURELY_UNSET_VARIABLE".into();
        let err = s.resolve_secret("crm").unwrap_err();
        assert!(err.problem.contains("not set"), "{}", err.problem);
        s.auth_secret = "file:/nonexistent/offload/secret".into();
        assert!(s.resolve_secret("crm").is_err());
    }
}
