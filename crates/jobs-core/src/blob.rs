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
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, WriteMultipart};
use secrecy::ExposeSecret;
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

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For the local backend: the directory objects live under.
    local_root: Option<PathBuf>,
    /// For stores that can hand out short-lived signed URLs (Azure with an account key or a
    /// user delegation key).
    signer: Option<Arc<dyn Signer>>,
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

/// The fields of an Azure Storage connection string (`Key=Value;…`).
fn connection_string_field<'a>(conn: &'a str, key: &str) -> Option<&'a str> {
    conn.split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

impl BlobStore {
    pub fn from_config(cfg: &BlobConfig) -> Result<Self, BlobError> {
        match cfg.backend {
            BlobBackend::Local => Self::local(&cfg.root),
            BlobBackend::Azure => Self::azure(cfg),
        }
    }

    /// Azure Blob Storage through `object_store`: a connection string, or an account with a
    /// key, a SAS token, or (neither) workload / managed identity. The builder starts from
    /// the `AZURE_*` environment that AKS workload identity and managed identities provide
    /// (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`); the
    /// configured values take precedence.
    pub fn azure(cfg: &BlobConfig) -> Result<Self, BlobError> {
        let conn = cfg.azure_connection_string.expose_secret();
        let field = |k| connection_string_field(conn, k).filter(|v| !v.is_empty());
        let account = field("AccountName")
            .unwrap_or(&cfg.azure_account)
            .to_owned();
        let key = field("AccountKey")
            .unwrap_or(cfg.azure_access_key.expose_secret())
            .to_owned();
        let sas = field("SharedAccessSignature")
            .unwrap_or(cfg.azure_sas_token.expose_secret())
            .to_owned();
        let endpoint = field("BlobEndpoint")
            .unwrap_or(&cfg.azure_endpoint)
            .trim_end_matches('/')
            .to_owned();
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_account(&account)
            .with_container_name(&cfg.azure_container);
        if !key.is_empty() {
            b = b.with_access_key(&key);
        }
        if !sas.is_empty() {
            // The token is URL-encoded; object_store encodes the pairs again when it appends them.
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .into_owned()
                    .collect();
            b = b.with_sas_authorization(pairs);
        }
        let describe = if endpoint.is_empty() {
            format!(
                "https://{account}.blob.core.windows.net/{}",
                cfg.azure_container
            )
        } else {
            b = b
                .with_endpoint(endpoint.clone())
                .with_allow_http(endpoint.starts_with("http://"));
            format!("{endpoint}/{}", cfg.azure_container)
        };
        let store = Arc::new(b.build().map_err(|e| BlobError::Setup {
            root: describe.clone(),
            source: Box::new(e),
        })?);
        // A SAS token cannot sign other SAS URLs; a key or an identity can.
        let signer: Option<Arc<dyn Signer>> = if sas.is_empty() {
            Some(store.clone())
        } else {
            None
        };
        Ok(Self {
            store,
            local_root: None,
            signer,
            describe,
        })
    }

    /// A short-lived signed URL reading `path`, when the store can make one.
    pub async fn signed_url(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(http::Method::GET, &Path::from(path), ttl)
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Some(url.to_string()))
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
        let describe = root.display().to_string();
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root),
            signer: None,
            describe,
        })
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
