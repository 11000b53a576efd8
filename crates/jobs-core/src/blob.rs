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

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::Method;
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

/// Most bytes one Put Block From URL copies here. Service versions before 2019-12-12 allow
/// 100 MiB per call (later ones 4000 MiB); the smaller limit works with all of them.
pub const MAX_COPY_BLOCK_BYTES: u64 = 100 * 1024 * 1024;
/// Most blocks a block blob may have committed.
pub const MAX_BLOCKS: usize = 50_000;
/// `x-ms-version` of the server-side copy requests (Put Block From URL needs 2018-03-28+).
const COPY_API_VERSION: &str = "2021-08-06";
/// Blocks signed together: every group gets fresh SAS URLs valid for [`COPY_SAS_TTL`].
const COPY_SIGN_GROUP: usize = 64;
/// Lifetime of the SAS URLs of one group of block copies.
const COPY_SAS_TTL: Duration = Duration::from_secs(3600);
/// Block copies in flight at once (each one is work on the service, not here).
const COPY_BLOCKS_IN_FLIGHT: usize = 4;
/// Tries of one copy request on transport errors and 500/502/503/504.
const COPY_TRIES: u32 = 3;

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

/// One block of a server-side concatenation: bytes `range` of source number `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyBlock {
    pub source: usize,
    pub range: Range<u64>,
}

/// The blocks that concatenate sources of `sizes` bytes, in order: each source split into
/// ranges of at most `max_block` bytes; empty sources contribute no block.
pub fn copy_blocks(sizes: &[u64], max_block: u64) -> Vec<CopyBlock> {
    let max_block = max_block.max(1);
    let mut blocks = Vec::new();
    for (source, &size) in sizes.iter().enumerate() {
        let mut start = 0;
        while start < size {
            let end = size.min(start + max_block);
            blocks.push(CopyBlock {
                source,
                range: start..end,
            });
            start = end;
        }
    }
    blocks
}

/// The id of block `index` of one composition `attempt`, base64 as the service wants it.
/// Fixed width and 32 characters before encoding, the same as `object_store`'s own block
/// ids: the service refuses blocks whose id length differs from the uncommitted blocks
/// already on the blob, which a failed attempt of either kind leaves behind. The attempt
/// prefix keeps two attempts on one blob from overwriting each other's blocks.
pub fn block_id(attempt: u64, index: usize) -> String {
    BASE64_STANDARD.encode(format!("{attempt:016x}{index:016}"))
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
        let copier = match &signer {
            Some(signer) => {
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(Duration::from_secs(600))
                    .build()
                    .map_err(|e| BlobError::Setup {
                        root: describe.clone(),
                        source: Box::new(e),
                    })?;
                Some(Arc::new(BlockCopier {
                    signer: signer.clone(),
                    http,
                    unsupported: AtomicBool::new(false),
                }))
            }
            None => None,
        };
        Ok(Self {
            store,
            local_root: None,
            signer,
            copier,
            describe,
        })
    }

    /// A short-lived signed URL reading `path`, when the store can make one.
    pub async fn signed_url(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        self.sign(http::Method::GET, path, ttl).await
    }

    async fn sign(
        &self,
        method: http::Method,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(method, &Path::from(path), ttl)
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
            copier: None,
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

    /// A short-lived signed URL that lets its holder write (PUT) `path`, when the store can
    /// make one (Azure: a SAS URL for Put Blob). Used for direct uploads.
    pub async fn signed_upload_url(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        self.sign(http::Method::PUT, path, ttl).await
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

    /// Whether [`BlobStore::compose`] is worth trying: an Azure store that can sign URLs and
    /// whose service has not answered 501 Not Implemented to it before.
    pub fn can_compose(&self) -> bool {
        self.copier
            .as_ref()
            .is_some_and(|c| !c.unsupported.load(Ordering::Relaxed))
    }

    /// Writes `dest` as the concatenation of `sources`, in order, server-side (see the
    /// module doc); returns its size. On failure `dest` is unchanged (only uncommitted blocks
    /// are left, which the next commit on `dest` discards). Errors name the refused operation
    /// and its HTTP status; after a 501, [`BlobStore::can_compose`] turns false.
    pub async fn compose(&self, dest: &str, sources: &[&str]) -> Result<u64, BlobError> {
        let copier = match &self.copier {
            Some(c) if self.can_compose() => c,
            _ => {
                return Err(BlobError::NoServerCopy {
                    path: dest.to_owned(),
                });
            }
        };
        let mut sizes = Vec::with_capacity(sources.len());
        for source in sources {
            sizes.push(self.size(source).await?);
        }
        let blocks = copy_blocks(&sizes, MAX_COPY_BLOCK_BYTES);
        if blocks.len() > MAX_BLOCKS {
            return Err(BlobError::TooManyBlocks {
                path: dest.to_owned(),
                blocks: blocks.len(),
            });
        }
        if blocks.is_empty() {
            // Nothing to copy: an empty object, written directly.
            self.store
                .put(&Path::from(dest), object_store::PutPayload::new())
                .await
                .map_err(|source| BlobError::Io {
                    path: dest.to_owned(),
                    source,
                })?;
            return Ok(0);
        }
        let done = copier.compose(dest, sources, &blocks).await;
        if let Err(BlobError::Refused { status: 501, .. }) = &done {
            copier.unsupported.store(true, Ordering::Relaxed);
        }
        done.map(|()| sizes.iter().sum())
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

/// Azure's server-side copy operations, authorized by SAS URLs from the store's signer (a
/// service SAS from the account key, or a user delegation SAS from an identity).
struct BlockCopier {
    signer: Arc<dyn Signer>,
    /// Its own client: these requests bypass `object_store`, which has no block copy API.
    http: reqwest::Client,
    /// Set once the service answers 501 (an emulator without Put Block From URL), so that
    /// later assemblies stream straight away instead of being refused again.
    unsupported: AtomicBool,
}

impl BlockCopier {
    async fn compose(
        &self,
        dest: &str,
        sources: &[&str],
        blocks: &[CopyBlock],
    ) -> Result<(), BlobError> {
        let attempt: u64 = rand::random();
        let dest_path = Path::from(dest);
        let signing = |source| BlobError::Io {
            path: dest.to_owned(),
            source,
        };
        for (group_no, group) in blocks.chunks(COPY_SIGN_GROUP).enumerate() {
            // Blocks are in source order, so a group's sources are one contiguous run.
            let first = group.first().map_or(0, |b| b.source);
            let last = group.last().map_or(0, |b| b.source);
            let paths: Vec<Path> = sources[first..=last]
                .iter()
                .map(|s| Path::from(*s))
                .collect();
            let reads = self
                .signer
                .signed_urls(Method::GET, &paths, COPY_SAS_TTL)
                .await
                .map_err(signing)?;
            let write = self
                .signer
                .signed_url(Method::PUT, &dest_path, COPY_SAS_TTL)
                .await
                .map_err(signing)?;
            // Owned requests: a stream over borrowed blocks makes the future not `Send`
            // for every lifetime (rustc's higher-ranked closure limitation).
            let requests: Vec<(url::Url, String, String)> = group
                .iter()
                .enumerate()
                .map(|(i, block)| {
                    let mut url = write.clone();
                    let id = block_id(attempt, group_no * COPY_SIGN_GROUP + i);
                    url.query_pairs_mut()
                        .append_pair("comp", "block")
                        .append_pair("blockid", &id);
                    let source = reads[block.source - first].to_string();
                    let range = format!("bytes={}-{}", block.range.start, block.range.end - 1);
                    (url, source, range)
                })
                .collect();
            futures::stream::iter(requests)
                .map(|(url, source, range)| async move {
                    self.send("Put Block From URL", dest, || {
                        self.http
                            .put(url.clone())
                            .header("x-ms-copy-source", &source)
                            .header("x-ms-source-range", &range)
                            .header(http::header::CONTENT_LENGTH, "0")
                    })
                    .await
                })
                .buffer_unordered(COPY_BLOCKS_IN_FLIGHT)
                .try_collect::<()>()
                .await?;
        }
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for index in 0..blocks.len() {
            let _ = write!(body, "<Latest>{}</Latest>", block_id(attempt, index));
        }
        body.push_str("</BlockList>");
        let mut url = self
            .signer
            .signed_url(Method::PUT, &dest_path, COPY_SAS_TTL)
            .await
            .map_err(signing)?;
        url.query_pairs_mut().append_pair("comp", "blocklist");
        self.send("Put Block List", dest, || {
            self.http.put(url.clone()).body(body.clone())
        })
        .await
    }

    /// Sends the request `make` builds, trying again on transport errors and transient
    /// statuses (every operation here is idempotent); any other non-2xx is [`Refused`].
    ///
    /// [`Refused`]: BlobError::Refused
    async fn send(
        &self,
        operation: &'static str,
        path: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(), BlobError> {
        let mut tries = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            tries += 1;
            let sent = make().header("x-ms-version", COPY_API_VERSION).send().await;
            let transient = match &sent {
                Ok(r) => matches!(r.status().as_u16(), 500 | 502 | 503 | 504),
                Err(_) => true,
            };
            if transient && tries < COPY_TRIES {
                tokio::time::sleep(backoff).await;
                backoff *= 4;
                continue;
            }
            let response = sent.map_err(|e| BlobError::Request {
                operation,
                path: path.to_owned(),
                source: e.without_url(),
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let code = response
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.text().await.unwrap_or_default();
            let message = body
                .split_once("<Message>")
                .and_then(|(_, m)| m.split_once("</Message>"))
                .and_then(|(m, _)| m.lines().next())
                .unwrap_or_default()
                .to_owned();
            return Err(BlobError::Refused {
                operation,
                path: path.to_owned(),
                status: status.as_u16(),
                code,
                message,
            });
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_blocks_split_large_sources_in_order() {
        const MIB: u64 = 1024 * 1024;
        let max = MAX_COPY_BLOCK_BYTES;
        let sizes = [5, 0, 250 * MIB, max, max + 1];
        let blocks = copy_blocks(&sizes, max);
        let got: Vec<(usize, Range<u64>)> =
            blocks.iter().map(|b| (b.source, b.range.clone())).collect();
        assert_eq!(
            got,
            vec![
                (0, 0..5),
                (2, 0..max),
                (2, max..2 * max),
                (2, 2 * max..250 * MIB),
                (3, 0..max),
                (4, 0..max),
                (4, max..max + 1),
            ]
        );
        // Per source, the ranges tile it exactly.
        for (source, &size) in sizes.iter().enumerate() {
            let covered: u64 = blocks
                .iter()
                .filter(|b| b.source == source)
                .map(|b| b.range.end - b.range.start)
                .sum();
            assert_eq!(covered, size, "source {source}");
        }
        assert!(copy_blocks(&[0, 0], max).is_empty());
        // 50,000 blocks of 100 MiB is the most one result can take.
        assert_eq!(
            copy_blocks(&[max * MAX_BLOCKS as u64], max).len(),
            MAX_BLOCKS
        );
        assert_eq!(
            copy_blocks(&[max * MAX_BLOCKS as u64 + 1], max).len(),
            MAX_BLOCKS + 1
        );
    }

    #[test]
    fn block_ids_have_one_width_and_order() {
        let ids: Vec<String> = [0, 7, 49_999, 1_000_000]
            .iter()
            .map(|&i| block_id(0xfeed, i))
            .collect();
        let raw: Vec<String> = ids
            .iter()
            .map(|id| String::from_utf8(BASE64_STANDARD.decode(id).unwrap()).unwrap())
            .collect();
        assert_eq!(raw[1], "000000000000feed0000000000000007");
        // The same encoded width as object_store's own block ids (32 characters).
        assert!(raw.iter().all(|r| r.len() == 32), "{raw:?}");
        assert!(ids.iter().all(|id| id.len() == ids[0].len()));
        assert_ne!(block_id(1, 0), block_id(2, 0));
    }

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
