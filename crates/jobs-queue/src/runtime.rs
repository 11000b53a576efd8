//! What every service starts with: the pool, the job store, the transport with its queues
//! ensured, the blob store and the dataset catalog — built once from the configuration.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::messages::Queues;
use crate::outbox::{Outbox, TxSender};
use crate::{
    ConnectionString, PgTransport, PgTransportOptions, QueueError, QueueSpec, ServiceBusTransport,
    Transport,
};
use jobs_core::blob::{BlobError, BlobStore};
use jobs_core::config::{Config, TransportKind};
use jobs_core::dataset::Catalog;
use jobs_core::db::DbError;
use jobs_core::store::JobStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("starting the queue transport: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the database schema is not up to date; run `offload migrate` first ({0})")]
    Schema(String),
}

#[derive(Debug, Clone)]
pub struct Runtime {
    pub cfg: Arc<Config>,
    pub pool: PgPool,
    pub store: JobStore,
    pub transport: Arc<dyn Transport>,
    /// Sends messages as part of a database transaction: the Postgres transport directly,
    /// any other through the outbox (whose relay the API runs).
    pub tx_sender: TxSender,
    pub queues: Queues,
    pub blobs: BlobStore,
    pub catalog: Arc<Catalog>,
}

impl Runtime {
    pub async fn start(cfg: Arc<Config>) -> Result<Self, StartError> {
        let (store_connections, _) = cfg.database.pool_sizes(cfg.queue.transport);
        let pool = jobs_core::db::connect_sized(&cfg.database, store_connections).await?;
        let pending = jobs_core::db::pending_migrations(&pool).await?;
        if pending > 0 {
            return Err(StartError::Schema(format!("{pending} migrations pending")));
        }
        let (transport, tx_sender): (Arc<dyn Transport>, TxSender) = match cfg.queue.transport {
            TransportKind::Postgres => {
                let pg = Arc::new(
                    PgTransport::start(pool.clone(), PgTransportOptions::from_config(&cfg)).await?,
                );
                (pg.clone(), TxSender::Postgres(pg))
            }
            TransportKind::Servicebus => {
                let cs = ConnectionString::parse(secrecy::ExposeSecret::expose_secret(
                    &cfg.queue.servicebus_connection_string,
                ))
                .map_err(QueueError::from)?;
                let sb: Arc<dyn Transport> = Arc::new(ServiceBusTransport::new(&cs)?);
                (sb.clone(), TxSender::Outbox(Outbox::new(pool.clone(), sb)))
            }
        };
        let queues = Queues::default();
        let default = |name| QueueSpec::from_config(name, &cfg.queue);
        // One delivery per webhook attempt: the first plus one per scheduled retry.
        let mut events = default(queues.events.clone());
        events.max_delivery_count = cfg.notifier.retry_schedule_secs.len() as u32 + 1;
        events.lock_duration = cfg.notifier.timeout() + Duration::from_secs(30);
        let specs = [
            (default(queues.jobs.clone()), "queue.lock_duration_secs"),
            (default(queues.work.clone()), "queue.lock_duration_secs"),
            (events, "notifier.timeout_secs (+ 30 s)"),
        ];
        // What the broker would refuse is refused here first, with the key named.
        let caps = transport.capabilities();
        for (spec, key) in &specs {
            caps.check(spec, key)?;
        }
        for (spec, _) in &specs {
            transport.ensure_queue(spec).await?;
        }
        let blobs = BlobStore::from_config(&cfg.blob)?;
        let catalog = Arc::new(Catalog::new(pool.clone(), cfg.datasets.clone()));
        Ok(Self {
            store: JobStore::new(pool.clone()),
            pool,
            transport,
            tx_sender,
            queues,
            blobs,
            catalog,
            cfg,
        })
    }
}

impl Runtime {
    /// What a kind's validation and planning may use.
    pub fn kind_env(&self) -> jobs_core::env::KindEnv {
        jobs_core::env::KindEnv {
            pool: self.pool.clone(),
            catalog: self.catalog.clone(),
            blobs: self.blobs.clone(),
            cfg: self.cfg.clone(),
        }
    }
}
