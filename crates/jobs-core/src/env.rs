//! What a job kind's code sees, whichever service runs it.

use std::sync::Arc;

use sqlx::PgPool;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::dataset::Catalog;

/// What a kind's code may use, in every service: validation and planning (API, enqueuer),
/// processing an item and finalizing a job (worker). Nothing of the service running it.
#[derive(Clone, Debug)]
pub struct KindEnv {
    pub pool: PgPool,
    pub catalog: Arc<Catalog>,
    pub blobs: BlobStore,
    pub cfg: Arc<Config>,
}
