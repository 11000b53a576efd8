//! The one typed configuration tree, loaded once at start.
//!
//! Layers, lowest first: the embedded, documented defaults (`config/defaults.toml`), an
//! optional TOML file, then environment variables prefixed `OFFLOAD__` with `__` between
//! levels. The result is validated before any service starts, and every error names the key
//! at fault. This is the only module that reads the environment.

pub mod servicebus;
mod services;
mod sources;

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The embedded defaults, also the reference documentation of every key.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The default of `telemetry.log_filter` (as in `defaults.toml`), so that interactive tools
/// can tell whether the operator chose a filter.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx::postgres::notice=warn";

pub use services::{
    ApiConfig, AuthConfig, BlobBackend, BlobConfig, DatasetConfig, Datasets, DownloadConfig,
    ExportConfig, ImportConfig, NotifierConfig, SchedulesConfig, UploadsConfig, WorkerConfig,
    is_identifier, is_table_name,
};
pub use sources::{Pagination, Partition, SourceConfig, SourceProblem, Sources};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub telemetry: TelemetryConfig,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub blob: BlobConfig,
    pub download: DownloadConfig,
    pub export: ExportConfig,
    pub import: ImportConfig,
    pub uploads: UploadsConfig,
    pub worker: WorkerConfig,
    pub notifier: NotifierConfig,
    pub schedules: SchedulesConfig,
    pub datasets: Datasets,
    /// The HTTP APIs ingest jobs read from (`[sources.<name>]`).
    #[serde(default)]
    pub sources: Sources,
}

/// The longest an abandon holds a message back: a longer delay is cut to this, whoever
/// asked for it. (Services cut remote-supplied delays to `queue.max_delay_secs` first; this
/// is the transports' own guard, so no delay can overflow their time arithmetic.)
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

impl DatabaseConfig {
    /// How `max_connections` is shared with the Postgres transport: (the job store's pool,
    /// the receivers' relaxed-commit pool). The receivers get a quarter (at least one);
    /// LISTEN connections come out of the store's pool. With another transport the store's
    /// pool has them all.
    pub fn pool_sizes(&self, transport: TransportKind) -> (u32, u32) {
        split_connections(self.max_connections, transport)
    }
}

/// [`DatabaseConfig::pool_sizes`] for `max` connections.
fn split_connections(max: u32, transport: TransportKind) -> (u32, u32) {
    match transport {
        TransportKind::Postgres => {
            let receivers = (max / 4).max(1);
            (max - receivers, receivers)
        }
        TransportKind::Servicebus => (max, 0),
    }
}

impl Config {
    /// The least `database.max_connections` with which `worker.concurrency` loops each get a
    /// job-store connection (an export's COPY, an import's transaction) without waiting for
    /// one another, beside the queue's LISTEN connection and one for the rest.
    pub fn least_connections_for_workers(&self) -> u32 {
        let listen =
            u32::from(self.queue.transport == TransportKind::Postgres && self.queue.listen_notify);
        let needed = self.worker.concurrency as u32 + listen + 1;
        (4..)
            .find(|&max| split_connections(max, self.queue.transport).0 >= needed)
            .unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Postgres,
    Servicebus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub transport: TransportKind,
    pub listen_notify: bool,
    pub poll_interval_ms: u64,
    pub lock_duration_secs: u64,
    pub max_delivery_count: u32,
    pub dedupe_window_secs: u64,
    pub maintenance_interval_ms: u64,
    pub vacuum_dead_rows: u64,
    pub max_delay_secs: u64,
    pub shutdown_grace_secs: u64,
    pub servicebus_connection_string: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    pub service_name: String,
    pub otlp_endpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
    /// A key whose name is only known at run time (`sources.<name>.page_size`).
    #[error("invalid configuration: `{key}` {problem}")]
    InvalidKey { key: String, problem: String },
}

impl Config {
    /// Loads defaults, then `file` if given, then `OFFLOAD__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file(path));
        }
        Self::from_figment(figment.merge(Env::prefixed("OFFLOAD__").split("__")))
    }

    /// Extracts and validates a configuration from any layering (tests use this with
    /// in-memory layers).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut cfg: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        cfg.validate()?;
        cfg.resolve_sources()?;
        Ok(cfg)
    }

    /// Defaults only, with a given database URL: for tests and tools.
    pub fn with_database_url(url: &str) -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::from(Toml::string(DEFAULTS))
                .merge(figment::providers::Serialized::default("database.url", url)),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        let url = self.database.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // The URL is a secret: say what is wrong without echoing it.
            return invalid("database.url", "must be a postgres:// or postgresql:// URL");
        }
        if self.database.max_connections < 4 {
            return invalid(
                "database.max_connections",
                "must be at least 4 (up to two LISTEN connections, the queue receivers' \
                 share, and one for everything else)",
            );
        }
        if self.database.connect_timeout_secs == 0 {
            return invalid("database.connect_timeout_secs", "must be at least 1");
        }
        if !(10..=60_000).contains(&self.queue.poll_interval_ms) {
            return invalid("queue.poll_interval_ms", "must be between 10 and 60000");
        }
        if !(1..=3600).contains(&self.queue.lock_duration_secs) {
            return invalid("queue.lock_duration_secs", "must be between 1 and 3600");
        }
        if !(1..=MAX_DELAY.as_secs()).contains(&self.queue.max_delay_secs) {
            return invalid(
                "queue.max_delay_secs",
                &format!("must be between 1 and {}", MAX_DELAY.as_secs()),
            );
        }
        if !(1..=1000).contains(&self.queue.max_delivery_count) {
            return invalid("queue.max_delivery_count", "must be between 1 and 1000");
        }
        if self.queue.dedupe_window_secs > 7 * 24 * 3600 {
            return invalid(
                "queue.dedupe_window_secs",
                "must be at most 604800 (7 days)",
            );
        }
        if !(100..=600_000).contains(&self.queue.maintenance_interval_ms) {
            return invalid(
                "queue.maintenance_interval_ms",
                "must be between 100 and 600000",
            );
        }
        if self.queue.transport == TransportKind::Servicebus {
            let cs = self.queue.servicebus_connection_string.expose_secret();
            if cs.is_empty() {
                return invalid(
                    "queue.servicebus_connection_string",
                    "must be set for the servicebus transport",
                );
            }
            if let Err(e) = servicebus::ConnectionString::parse(cs) {
                return invalid("queue.servicebus_connection_string", &e.to_string());
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter) {
            return invalid(
                "telemetry.log_filter",
                &format!("is not a valid filter: {e}"),
            );
        }
        self.validate_services()?;
        let otlp = &self.telemetry.otlp_endpoint;
        if !(otlp.is_empty() || otlp.starts_with("http://") || otlp.starts_with("https://")) {
            return invalid(
                "telemetry.otlp_endpoint",
                "must be empty or an http(s):// URL",
            );
        }
        Ok(())
    }
}

impl Config {
    fn validate_services(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, problem: String| Err(ConfigError::Invalid { key, problem });
        if self.api.max_body_bytes < 1024 {
            return invalid("api.max_body_bytes", "must be at least 1024".into());
        }
        if self.api.max_upload_bytes == 0 {
            return invalid("api.max_upload_bytes", "must be at least 1".into());
        }
        if !(1..=300).contains(&self.api.header_read_timeout_secs) {
            return invalid(
                "api.header_read_timeout_secs",
                "must be between 1 and 300".into(),
            );
        }
        if !(1..=3600).contains(&self.api.body_idle_timeout_secs) {
            return invalid(
                "api.body_idle_timeout_secs",
                "must be between 1 and 3600".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.api.max_connections) {
            return invalid(
                "api.max_connections",
                "must be between 1 and 1000000".into(),
            );
        }
        if !(60..=7 * 86_400).contains(&self.api.upload_link_ttl_secs) {
            return invalid(
                "api.upload_link_ttl_secs",
                "must be between 60 and 604800 (7 days)".into(),
            );
        }
        if !(1..=(1 << 30)).contains(&self.import.chunk_bytes) {
            return invalid(
                "import.chunk_bytes",
                "must be between 1 and 1073741824 (1 GiB)".into(),
            );
        }
        // Ten years: far beyond any sensible retention, and no overflow in the arithmetic.
        if self.uploads.retention_hours > 87_600 {
            return invalid(
                "uploads.retention_hours",
                "must be between 0 (keep) and 87600 (10 years)".into(),
            );
        }
        if !(1..=86_400).contains(&self.uploads.sweep_interval_secs) {
            return invalid(
                "uploads.sweep_interval_secs",
                "must be between 1 and 86400".into(),
            );
        }
        if crate::id::TenantId::parse(&self.auth.dev_tenant).is_err() {
            return invalid(
                "auth.dev_tenant",
                "must be a valid tenant id (a-z, 0-9, '-', '_')".into(),
            );
        }
        let secret = self.auth.dev_webhook_secret.expose_secret();
        if !secret.is_empty() && !secret.starts_with("whsec_") {
            return invalid(
                "auth.dev_webhook_secret",
                "must be empty or start with whsec_".into(),
            );
        }
        let key = self.download.signing_key.expose_secret();
        if !key.is_empty() && key.len() < 32 {
            return invalid(
                "download.signing_key",
                "must be empty or at least 32 characters".into(),
            );
        }
        if !(1..=86_400).contains(&self.download.link_ttl_secs) {
            return invalid(
                "download.link_ttl_secs",
                "must be between 1 and 86400".into(),
            );
        }
        if self.blob.backend == BlobBackend::Azure
            && self.blob.azure_connection_string.expose_secret().is_empty()
            && self.blob.azure_account.is_empty()
        {
            return invalid(
                "blob.azure_account",
                "the azure backend needs an account or a connection string".into(),
            );
        }
        let e = &self.export;
        if e.min_chunk_rows == 0 || e.min_chunk_rows > e.max_chunk_rows {
            return invalid(
                "export.min_chunk_rows",
                "must be at least 1 and at most export.max_chunk_rows".into(),
            );
        }
        if !(e.min_chunk_rows..=e.max_chunk_rows).contains(&e.default_chunk_rows) {
            return invalid(
                "export.default_chunk_rows",
                "must lie between the min and max chunk rows".into(),
            );
        }
        if !(1..=256).contains(&self.worker.concurrency) {
            return invalid("worker.concurrency", "must be between 1 and 256".into());
        }
        if self.worker.retry_base_ms == 0 || self.worker.retry_cap_secs == 0 {
            return invalid(
                "worker.retry_base_ms",
                "retry base and cap must be positive".into(),
            );
        }
        if self.worker.retry_cap_secs > self.queue.max_delay_secs {
            return invalid(
                "worker.retry_cap_secs",
                format!(
                    "must not exceed queue.max_delay_secs ({})",
                    self.queue.max_delay_secs
                ),
            );
        }
        let least = self.least_connections_for_workers();
        if self.database.max_connections < least {
            return invalid(
                "database.max_connections",
                format!(
                    "is {}, but worker.concurrency = {} needs at least {least}: one job-store \
                     connection per worker loop, the queue's LISTEN connection and one for \
                     everything else, after the queue receivers' quarter; raise \
                     database.max_connections or lower worker.concurrency",
                    self.database.max_connections, self.worker.concurrency
                ),
            );
        }
        if self.notifier.timeout_secs == 0 || self.notifier.retry_schedule_secs.is_empty() {
            return invalid(
                "notifier.retry_schedule_secs",
                "needs a positive timeout and at least one retry".into(),
            );
        }
        if let Some(long) = self
            .notifier
            .retry_schedule_secs
            .iter()
            .find(|s| **s > self.queue.max_delay_secs)
        {
            return invalid(
                "notifier.retry_schedule_secs",
                format!(
                    "{long} is longer than queue.max_delay_secs ({})",
                    self.queue.max_delay_secs
                ),
            );
        }
        if !(100..=60_000).contains(&self.schedules.tick_interval_ms) {
            return invalid(
                "schedules.tick_interval_ms",
                "must be between 100 and 60000".into(),
            );
        }
        for (name, d) in &self.datasets {
            let at = |problem: String| {
                Err(ConfigError::Invalid {
                    key: "datasets",
                    problem: format!("dataset `{name}`: {problem}"),
                })
            };
            if !is_identifier(name) {
                return at("the name must be letters, digits and '_'".into());
            }
            if !is_table_name(&d.table) {
                return at(format!(
                    "table {:?} must be `name` or `schema.name` of letters, digits and '_'",
                    d.table
                ));
            }
            for c in std::iter::once(&d.key)
                .chain(&d.columns)
                .chain(&d.filterable)
            {
                if !is_identifier(c) {
                    return at(format!("column {c:?} must be letters, digits and '_'"));
                }
            }
            if d.columns.is_empty() {
                return at("lists no columns".into());
            }
            if let Some(c) = d
                .filterable
                .iter()
                .find(|c| !d.columns.contains(c) && **c != d.key)
            {
                return at(format!("filterable column `{c}` is not one of its columns"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Validates every source and reads the credentials their `auth_secret` refers to:
    /// once, here, so a missing secret stops the process at start with the key named.
    fn resolve_sources(&mut self) -> Result<(), ConfigError> {
        let problem = |p: SourceProblem| ConfigError::InvalidKey {
            key: p.key,
            problem: p.problem,
        };
        for (name, source) in &mut self.sources {
            source.validate(name).map_err(problem)?;
            source.resolve_secret(name).map_err(problem)?;
        }
        Ok(())
    }
}

impl DatabaseConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

impl QueueConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn lock_duration(&self) -> Duration {
        Duration::from_secs(self.lock_duration_secs)
    }

    /// How long a message being handled at shutdown may take before it is given back.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The longest delay before a retry, whoever asks for it (see `max_delay_secs`).
    pub fn max_delay(&self) -> Duration {
        Duration::from_secs(self.max_delay_secs)
    }

    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_window_secs)
    }

    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_millis(self.maintenance_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::Serialized;

    use super::*;

    fn defaults() -> Figment {
        Figment::from(Toml::string(DEFAULTS))
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::from_figment(defaults()).unwrap();
        assert_eq!(cfg.telemetry.log_filter, DEFAULT_LOG_FILTER);
        assert_eq!(cfg.queue.transport, TransportKind::Postgres);
        assert_eq!(cfg.queue.lock_duration(), Duration::from_secs(60));
        assert_eq!(
            cfg.uploads.retention(),
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        let keep =
            Config::from_figment(defaults().merge(Toml::string("[uploads]\nretention_hours = 0")))
                .unwrap();
        assert_eq!(keep.uploads.retention(), None);
    }

    #[test]
    fn layers_override_in_order() {
        let cfg = Config::from_figment(
            defaults()
                .merge(Toml::string(
                    "[queue]\npoll_interval_ms = 250\nmax_delivery_count = 3",
                ))
                .merge(Serialized::default("queue.max_delivery_count", 5)),
        )
        .unwrap();
        assert_eq!(cfg.queue.poll_interval_ms, 250);
        assert_eq!(cfg.queue.max_delivery_count, 5);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn environment_variables_override_with_double_underscores() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OFFLOAD__QUEUE__LISTEN_NOTIFY", "false");
            jail.set_env("OFFLOAD__TELEMETRY__LOG_FORMAT", "json");
            let cfg = Config::load(None).unwrap();
            assert!(!cfg.queue.listen_notify);
            assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn too_few_connections_for_the_workers_loops_are_refused() {
        let err =
            Config::from_figment(defaults().merge(Toml::string("[database]\nmax_connections = 4")))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("database.max_connections") && err.contains("worker.concurrency = 4"),
            "{err}"
        );
        assert!(err.contains("at least 7"), "{err}");
        let cfg = Config::from_figment(defaults().merge(Toml::string(
            "[database]\nmax_connections = 4\n[worker]\nconcurrency = 1",
        )))
        .unwrap();
        assert_eq!(cfg.least_connections_for_workers(), 4);
        let err = Config::from_figment(
            defaults().merge(Toml::string("[worker]\nretry_cap_secs = 99999999999")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("worker.retry_cap_secs"), "{err}");
    }

    #[test]
    fn errors_name_the_key_and_do_not_echo_secrets() {
        let err = Config::from_figment(defaults().merge(Serialized::default(
            "database.url",
            "mysql://u:hunter2@h/db",
        )))
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let err =
            Config::from_figment(defaults().merge(Toml::string("[queue]\nlock_duration_secs = 0")))
                .unwrap_err()
                .to_string();
        assert!(err.contains("queue.lock_duration_secs"), "{err}");

        let err =
            Config::from_figment(defaults().merge(Toml::string("[queue]\npoll_intervall_ms = 5")))
                .unwrap_err()
                .to_string();
        assert!(err.contains("poll_intervall_ms"), "{err}");

        let err = Config::from_figment(
            defaults().merge(Toml::string("[schedules]\ntick_interval_ms = 0")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("schedules.tick_interval_ms"), "{err}");

        let err = Config::from_figment(
            defaults().merge(Toml::string("[uploads]\nretention_hours = 100000")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("uploads.retention_hours"), "{err}");

        let err = Config::load(Some(Path::new("/nonexistent/offload.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "config file /nonexistent/offload.toml does not exist");
    }
}
