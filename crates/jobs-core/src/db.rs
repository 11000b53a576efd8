//! Connecting to Postgres and applying Offload's migrations.
//!
//! Migrations live in the workspace's `migrations/` folder and are embedded in every binary;
//! `offload migrate` applies them (a Kubernetes Job in production). Services never migrate
//! on their own start, so a rolling deploy cannot race two schema changes.

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("`database.url` is not a valid Postgres URL: {0}")]
    BadUrl(sqlx::Error),
    #[error(
        "cannot reach Postgres at {host}:{port}. Start one (for example with \
         `scripts/ensure-postgres.sh`) or point `OFFLOAD__DATABASE__URL` at one"
    )]
    Unreachable {
        host: String,
        port: u16,
        source: sqlx::Error,
    },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether a database error will come back the same way however often the statement is
/// tried again: a data exception (SQLSTATE class 22: a value that does not cast) or a
/// definition error (class 42: a dropped column, a missing table). Connection trouble,
/// serialization failures and deadlocks are not.
pub fn fails_the_same_way_again(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("42"))
}

/// Parses the configured URL without echoing it (it may hold a password).
pub fn connect_options(cfg: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    cfg.url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .map_err(DbError::BadUrl)
}

/// Opens a pool of `max_connections` and checks that Postgres answers.
pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    connect_sized(cfg, cfg.max_connections).await
}

/// Opens a pool of `size` connections (a share of `max_connections`; see
/// [`DatabaseConfig::pool_sizes`]) and checks that Postgres answers.
pub async fn connect_sized(cfg: &DatabaseConfig, size: u32) -> Result<PgPool, DbError> {
    let options = connect_options(cfg)?.application_name("offload");
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(cfg.connect_timeout())
        .connect_with(options)
        .await
        .map_err(|source| DbError::Unreachable { host, port, source })
}

/// Creates the configured database when it does not exist yet (connecting to the server's
/// `postgres` database to do so). Returns whether it was created.
pub async fn ensure_database(cfg: &DatabaseConfig) -> Result<bool, DbError> {
    use sqlx::{Connection, PgConnection};
    let options = connect_options(cfg)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let unreachable = |source| DbError::Unreachable {
        host: host.clone(),
        port,
        source,
    };
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(unreachable)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(unreachable)?;
    if !exists {
        // Identifiers cannot be bound: quote it, doubling any embedded quote.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
            .map_err(unreachable)?;
    }
    let _ = admin.close().await;
    Ok(!exists)
}

/// Applies every pending migration. Safe to run concurrently: sqlx takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// How many of the embedded migrations the database has not applied yet.
pub async fn pending_migrations(pool: &PgPool) -> Result<usize, DbError> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}
