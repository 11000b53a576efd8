//! Test support (feature `testing`): the Postgres transport on a test's own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jobs_core::testing::TestDb;

use crate::{PgTransport, PgTransportOptions};

/// What a [`TestDb`] gives queue tests.
#[async_trait::async_trait]
pub trait TestDbExt {
    /// The Postgres transport on this database, polling every 50 ms, maintenance off.
    async fn transport(&self, listen_notify: bool) -> Arc<PgTransport>;
}

#[async_trait::async_trait]
impl TestDbExt for TestDb {
    async fn transport(&self, listen_notify: bool) -> Arc<PgTransport> {
        let opts = PgTransportOptions {
            listen_notify,
            poll_interval: Duration::from_millis(50),
            maintenance_interval: Duration::from_secs(3600),
            vacuum_dead_rows: 0,
            receiver_connections: 10,
        };
        Arc::new(PgTransport::start(self.pool.clone(), opts).await.unwrap())
    }
}
