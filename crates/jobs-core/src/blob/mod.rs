//! The blob store: where parts, results and uploads live, through `object_store` (the local
//! filesystem by default; Azure Blob Storage and S3 behind the same trait).
//!
//! Writes stream: a [`BlobWriter`] uploads in parts as bytes arrive, with a bounded number
//! of parts in flight, and counts bytes and the SHA-256 on the way — nothing holds a whole
//! object in memory. An object appears only when its writer finishes (a local file is
//! written beside its path and renamed), so a reader never sees half an object, and a retry
//! at the same path replaces it whole.
//!
//! On Azure, when the store can sign URLs, [`BlobStore::compose`] concatenates blobs
//! server-side: Put Block From URL copies each source (in ranges of at most
//! [`MAX_COPY_BLOCK_BYTES`]) into an uncommitted block of the destination, and Put Block List
//! commits the blocks in order. No byte of the sources passes through this process.
//!
//! The parts: this file holds the store's handle, its errors and reads; `backends` builds
//! it from the configuration (local files, Azure with its credentials) and signs URLs;
//! `writer` streams writes; `compose` does the server-side concatenation.

mod backends;
mod compose;
mod staging;
mod writer;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStore;
use object_store::path::Path;
use object_store::signer::Signer;

pub use compose::{CopyBlock, MAX_BLOCKS, MAX_COPY_BLOCK_BYTES, block_id, copy_blocks};
pub use writer::BlobWriter;

use compose::BlockCopier;
pub use staging::STAGING_MAX_AGE;

/// Size of each ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store at {root}: {source}")]
    Setup {
        root: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("blob {path}: {source}")]
    Io {
        path: String,
        source: object_store::Error,
    },
    /// The service answered a server-side copy request with an error status.
    #[error("{operation} on blob {path} was refused: HTTP {status} {code}: {message}")]
    Refused {
        operation: &'static str,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A server-side copy request got no answer (the error carries no URL: it would hold a
    /// SAS signature).
    #[error("{operation} on blob {path}: {source}")]
    Request {
        operation: &'static str,
        path: String,
        source: reqwest::Error,
    },
    #[error("blob {path}: needs {blocks} blocks, a block blob holds at most 50,000")]
    TooManyBlocks { path: String, blocks: usize },
    #[error("blob {path}: this store cannot copy blobs server-side")]
    NoServerCopy { path: String },
}

impl BlobError {
    /// The object does not exist (as opposed to the store failing to answer).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Io {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    /// A conditional read found the object written again since its entity tag was taken.
    pub fn is_changed(&self) -> bool {
        matches!(
            self,
            Self::Io {
                source: object_store::Error::Precondition { .. },
                ..
            }
        )
    }
}

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For the local backend: the directory objects live under.
    local_root: Option<PathBuf>,
    /// For stores that can hand out short-lived signed URLs (Azure with an account key or a
    /// user delegation key).
    signer: Option<Arc<dyn Signer>>,
    /// Server-side copies for [`BlobStore::compose`]: Azure stores with a signer.
    copier: Option<Arc<BlockCopier>>,
    /// Where the objects are, for messages (never with credentials).
    describe: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("at", &self.describe)
            .finish()
    }
}

impl BlobStore {
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where an object is on disk, for the local backend.
    pub fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(path))
    }

    /// The object's bytes as a stream of chunks of up to 4 MiB, each one ranged read (one
    /// system call on the local filesystem, one GET against a cloud store), so reading a
    /// large object costs few round trips and holds at most one chunk.
    pub async fn read(
        &self,
        path: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let size = self.size(path).await?;
        let store = self.store.clone();
        let owned = path.to_owned();
        let location = Path::from(path);
        let ranges = (0..size)
            .step_by(READ_BYTES as usize)
            .map(move |start| start..(start + READ_BYTES).min(size));
        Ok(futures::stream::iter(ranges)
            .then(move |range| {
                let (store, location, owned) = (store.clone(), location.clone(), owned.clone());
                async move {
                    store
                        .get_range(&location, range)
                        .await
                        .map_err(|source| BlobError::Io {
                            path: owned,
                            source,
                        })
                }
            })
            .boxed())
    }

    /// Bytes `range` of an object, in one ranged read.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        self.read_range_if(path, range, None).await
    }

    /// Bytes `range` of an object, in one ranged read (an import work item reads its byte
    /// range of the uploaded file this way), only if the object still has entity tag
    /// `etag` (when given): an object written again since fails with
    /// [`BlobError::is_changed`] instead of being read half old, half new.
    pub async fn read_range_if(
        &self,
        path: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> Result<Bytes, BlobError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let io = |source| BlobError::Io {
            path: path.to_owned(),
            source,
        };
        let options = object_store::GetOptions {
            range: Some(range.into()),
            if_match: etag.map(str::to_owned),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&Path::from(path), options)
            .await
            .map_err(io)?;
        got.bytes().await.map_err(io)
    }

    /// As [`BlobStore::read`], each ranged read conditional on entity tag `etag` (see
    /// [`BlobStore::read_range_if`]).
    pub async fn read_if(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let size = self.size(path).await?;
        let (this, owned, etag) = (self.clone(), path.to_owned(), etag.map(str::to_owned));
        let ranges = (0..size)
            .step_by(READ_BYTES as usize)
            .map(move |start| start..(start + READ_BYTES).min(size));
        Ok(futures::stream::iter(ranges)
            .then(move |range| {
                let (this, owned, etag) = (this.clone(), owned.clone(), etag.clone());
                async move { this.read_range_if(&owned, range, etag.as_deref()).await }
            })
            .boxed())
    }

    /// The object's size and entity tag (which changes whenever it is written), when the
    /// store gives one.
    pub async fn head(&self, path: &str) -> Result<(u64, Option<String>), BlobError> {
        let meta = self
            .store
            .head(&Path::from(path))
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok((meta.size, meta.e_tag))
    }

    pub async fn size(&self, path: &str) -> Result<u64, BlobError> {
        Ok(self.head(path).await?.0)
    }

    /// The paths of the objects under `prefix` (a folder, ending in `/`), in no order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|(path, _)| path)
            .collect())
    }

    /// The objects under `prefix` with when each was last written, in no order.
    pub async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, BlobError> {
        let location = Path::from(prefix);
        let mut listing = self.store.list(Some(&location));
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| BlobError::Io {
                path: prefix.to_owned(),
                source,
            })?;
            objects.push((meta.location.to_string(), meta.last_modified));
        }
        Ok(objects)
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(BlobError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
