//! Test support (feature `testing`): one fresh Postgres database per test, cloned from a
//! template that has the migrations applied (a `CREATE DATABASE … TEMPLATE`, not a migration
//! run per test), dropped again when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::config::{Config, DEFAULTS};

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub pool: PgPool,
    /// The URL of this database.
    pub url: String,
    name: String,
    admin: PgConnectOptions,
}

/// The configured server (OFFLOAD__DATABASE__URL overrides the default), and its URL.
fn server() -> (PgConnectOptions, String) {
    let cfg = Config::load(None).expect("test configuration");
    let url = cfg.database.url.expose_secret().to_owned();
    let opts = PgConnectOptions::from_str(&url).expect("database.url");
    (opts.database("postgres"), url)
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

fn template_name() -> String {
    let mut h = Sha256::new();
    for m in crate::db::MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&m.checksum);
    }
    let digest = h.finalize();
    format!(
        "offload_tpl_{:x}",
        u64::from_be_bytes(digest[..8].try_into().unwrap())
    )
}

async fn ensure_template(admin: &PgConnectOptions) -> String {
    let name = template_name();
    let mut conn = PgConnection::connect_with(admin)
        .await
        .expect("cannot reach the test Postgres; run the README's test command, which starts one");
    // Serialize template creation across concurrently starting test processes.
    conn.execute("SELECT pg_advisory_lock(7243091)")
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
        // Templates of other schema versions are dropped once a day old: younger ones may
        // belong to another checkout testing at the same time on this server.
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database
             WHERE datname LIKE 'offload\\_tpl\\_%'
               AND shobj_description(oid, 'pg_database') ~ '^created [0-9]+$'
               AND split_part(shobj_description(oid, 'pg_database'), ' ', 2)::bigint
                   < extract(epoch FROM now())::bigint - 86400",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for db in old {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
                .await;
        }
        let building = format!("{name}_building");
        conn.execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
            .await
            .unwrap();
        conn.execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .unwrap();
        let mut tpl = PgConnection::connect_with(&admin.clone().database(&building))
            .await
            .unwrap();
        crate::db::MIGRATOR
            .run(&mut tpl)
            .await
            .expect("migrations apply");
        tpl.close().await.unwrap();
        conn.execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str())
            .await
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        conn.execute(format!("COMMENT ON DATABASE {name} IS 'created {now}'").as_str())
            .await
            .unwrap();
    }
    conn.execute("SELECT pg_advisory_unlock(7243091)")
        .await
        .unwrap();
    name
}

impl TestDb {
    pub async fn new() -> Self {
        let (admin, server_url) = server();
        let name = format!("offload_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        // A checkout of an older version may drop the template meanwhile: make it again.
        let mut attempts = 0;
        loop {
            let template = ensure_template(&admin).await;
            let created = conn
                .execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
                .await;
            match created {
                Ok(_) => break,
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    eprintln!("creating the test database failed ({e}); trying again");
                }
                Err(e) => panic!("creating the test database: {e}"),
            }
        }
        conn.close().await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .acquire_timeout(Duration::from_secs(20))
            .connect_with(admin.clone().database(&name))
            .await
            .unwrap();
        Self {
            pool,
            url: with_database(&server_url, &name),
            name,
            admin,
        }
    }

    /// The default configuration pointed at this database, with TOML `layers` on top (later
    /// layers win).
    pub fn config(&self, layers: &[&str]) -> Config {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        for layer in layers {
            figment = figment.merge(Toml::string(layer));
        }
        Config::from_figment(figment.merge(Serialized::default("database.url", &self.url)))
            .expect("test configuration")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Dropping happens outside async context: use a thread with its own runtime.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// Azurite's well-known development account (public, the same in every installation), on
/// the port `scripts/ensure-azurite.sh` starts it on.
pub const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

/// The blob store on Azurite's `offload-test` container (created by
/// `scripts/ensure-azurite.sh`).
pub fn azurite() -> crate::blob::BlobStore {
    crate::blob::BlobStore::azure(&crate::config::BlobConfig {
        backend: crate::config::BlobBackend::Azure,
        root: "unused".into(),
        azure_connection_string: secrecy::SecretString::from(AZURITE),
        azure_account: String::new(),
        azure_access_key: secrecy::SecretString::from(""),
        azure_sas_token: secrecy::SecretString::from(""),
        azure_container: "offload-test".into(),
        azure_endpoint: String::new(),
    })
    .unwrap()
}

/// Waits until `check` answers `Some`, looking every 50 ms, and returns that answer; fails
/// the test naming `what` when `deadline` passes first. For conditions that no event
/// announces (a row in another process's table); prefer awaiting the event where one is.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        every.tick().await;
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not so after {deadline:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_swapped_in_urls() {
        use super::with_database as w;
        assert_eq!(
            w("postgres://u@h:5432/offload", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            w("postgres://u@h/offload?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(
            w("postgres://u@localhost/offload?host=/run/pg", "t1"),
            "postgres://u@localhost/t1?host=/run/pg"
        );
        assert_eq!(w("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
    }
}
