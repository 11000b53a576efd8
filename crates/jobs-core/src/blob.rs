//! The blob store: where parts, results and uploads live, through `object_store` (the local
//! filesystem by default; Azure Blob Storage and S3 behind the same trait).
//!
//! Writes stream: a [`BlobWriter`] uploads in parts as bytes arrive, with a bounded number
//! of parts in flight, and counts bytes and the SHA-256 on the way — nothing holds a whole
//! object in memory. An object appears only when its writer finishes (a local file is
//! written beside its path and renamed), so a reader never sees half an object, and a retry
//! at the same path replaces it whole.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::config::{BlobBackend, BlobConfig};

/// Size of each ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Size of each uploaded part.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight per writer: memory per writer stays under PART_BYTES * (this + 1).
const PARTS_IN_FLIGHT: usize = 2;

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
}

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For the local backend: the directory objects live under.
    local_root: Option<PathBuf>,
}

impl BlobStore {
    pub fn from_config(cfg: &BlobConfig) -> Result<Self, BlobError> {
        match cfg.backend {
            BlobBackend::Local => Self::local(&cfg.root),
        }
    }

    /// Objects as files under `root`, created if missing.
    pub fn local(root: &std::path::Path) -> Result<Self, BlobError> {
        let setup = |e: Box<dyn std::error::Error + Send + Sync>| BlobError::Setup {
            root: root.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(root).map_err(|e| setup(Box::new(e)))?;
        let root = std::fs::canonicalize(root).map_err(|e| setup(Box::new(e)))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| setup(Box::new(e)))?;
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
        })
    }

    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
        }
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where an object is on disk, for the local backend.
    pub fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(path))
    }

    pub async fn writer(&self, path: &str) -> Result<BlobWriter, BlobError> {
        let p = Path::from(path);
        let upload = self
            .store
            .put_multipart(&p)
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(BlobWriter {
            path: path.to_owned(),
            inner: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            hasher: Sha256::new(),
            bytes: 0,
        })
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

    pub async fn size(&self, path: &str) -> Result<u64, BlobError> {
        let meta = self
            .store
            .head(&Path::from(path))
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(meta.size)
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

/// A streaming upload in progress. Call [`BlobWriter::finish`] to publish the object or
/// [`BlobWriter::abort`] to drop it; dropping the writer abandons the upload.
pub struct BlobWriter {
    path: String,
    inner: WriteMultipart,
    hasher: Sha256,
    bytes: u64,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.inner
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|source| BlobError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.inner.write(chunk);
        Ok(())
    }

    pub async fn finish(self) -> Result<Written, BlobError> {
        let path = self.path;
        self.inner
            .finish()
            .await
            .map_err(|source| BlobError::Io { path, source })?;
        Ok(Written {
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
        })
    }

    pub async fn abort(self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(path = %self.path, error = %e, "aborting an upload failed");
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_stream_in_parts_and_publish_whole() {
        let dir = std::env::temp_dir().join(format!("offload-blob-{}", uuid::Uuid::new_v4()));
        let blobs = BlobStore::local(&dir).unwrap();
        let mut w = blobs.writer("a/b.csv").await.unwrap();
        let chunk = vec![b'x'; 3 * 1024 * 1024];
        for _ in 0..5 {
            w.write(&chunk).await.unwrap();
        }
        assert!(!dir.join("a/b.csv").exists(), "visible before finish");
        let written = w.finish().await.unwrap();
        assert_eq!(written.bytes, 15 * 1024 * 1024);
        let mut expected = Sha256::new();
        for _ in 0..5 {
            expected.update(&chunk);
        }
        assert_eq!(written.sha256, hex(&expected.finalize()));
        assert_eq!(blobs.size("a/b.csv").await.unwrap(), 15 * 1024 * 1024);
        let mut read = 0;
        let mut s = blobs.read("a/b.csv").await.unwrap();
        while let Some(c) = s.next().await {
            read += c.unwrap().len();
        }
        assert_eq!(read, 15 * 1024 * 1024);
        blobs.delete("a/b.csv").await.unwrap();
        blobs.delete("a/b.csv").await.unwrap();
        let Err(err) = blobs.read("a/b.csv").await else {
            panic!("a deleted object was read")
        };
        let err = err.to_string();
        assert!(err.contains("a/b.csv"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
