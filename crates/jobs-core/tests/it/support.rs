//! Test databases: one fresh Postgres database per test, cloned from a template that has the
//! migrations applied (so a test costs a `CREATE DATABASE … TEMPLATE`, not a migration run),
//! and dropped again when the test ends.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::Config;
use jobs_core::queue::{PgTransport, PgTransportOptions};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

pub struct TestDb {
    pub pool: PgPool,
    name: String,
    admin: PgConnectOptions,
}

/// The server named by the configured `database.url` (OFFLOAD__DATABASE__URL overrides it),
/// reached through its `postgres` database.
fn admin_options() -> PgConnectOptions {
    let cfg = Config::load(None).expect("test configuration");
    PgConnectOptions::from_str(cfg.database.url.expose_secret())
        .expect("database.url")
        .database("postgres")
}

fn template_name() -> String {
    let mut h = Sha256::new();
    for m in jobs_core::db::MIGRATOR.iter() {
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
        jobs_core::db::MIGRATOR
            .run(&mut tpl)
            .await
            .expect("migrations apply");
        tpl.close().await.unwrap();
        conn.execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str())
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
        let admin = admin_options();
        let template = ensure_template(&admin).await;
        let name = format!("offload_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = admin.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .acquire_timeout(Duration::from_secs(20))
            .connect_with(options.clone())
            .await
            .unwrap();
        Self { pool, name, admin }
    }

    /// The Postgres transport on this database.
    pub async fn transport(&self, listen_notify: bool) -> Arc<PgTransport> {
        let opts = PgTransportOptions {
            listen_notify,
            poll_interval: Duration::from_millis(50),
            maintenance_interval: Duration::from_secs(3600),
            vacuum_dead_rows: 0,
        };
        Arc::new(PgTransport::start(self.pool.clone(), opts).await.unwrap())
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
