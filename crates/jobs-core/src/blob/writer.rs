//! Streaming writes: a [`BlobWriter`] uploads in parts as bytes arrive, a bounded number in
//! flight, counting bytes and the SHA-256 on the way; the object appears only when it
//! finishes.

use object_store::WriteMultipart;
use object_store::path::Path;
use sha2::{Digest, Sha256};

use super::{BlobError, BlobStore, Written, hex};

/// Size of each uploaded part.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight per writer: memory per writer stays under PART_BYTES * (this + 1).
const PARTS_IN_FLIGHT: usize = 2;

impl BlobStore {
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

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
