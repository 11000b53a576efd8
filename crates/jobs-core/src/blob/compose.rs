//! Server-side concatenation on Azure (see the parent module): the blocks to copy, their
//! ids, and the Put Block From URL / Put Block List requests, signed by the store's signer.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use futures::{StreamExt, TryStreamExt};
use http::Method;
use object_store::path::Path;
use object_store::signer::Signer;

use super::{BlobError, BlobStore};

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

impl BlobStore {
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
}

/// Azure's server-side copy operations, authorized by SAS URLs from the store's signer (a
/// service SAS from the account key, or a user delegation SAS from an identity).
pub(super) struct BlockCopier {
    pub(super) signer: Arc<dyn Signer>,
    /// Its own client: these requests bypass `object_store`, which has no block copy API.
    pub(super) http: reqwest::Client,
    /// Set once the service answers 501 (an emulator without Put Block From URL), so that
    /// later assemblies stream straight away instead of being refused again.
    pub(super) unsupported: AtomicBool,
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
}
