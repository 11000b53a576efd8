//! Result assembly on Azure Blob Storage, for real against Azurite (started by the README's
//! test command, `scripts/ensure-azurite.sh`, which creates the `offload-test` container):
//! whichever way the result is assembled — server-side block copies, or the streaming
//! fallback where the service refuses them — it is exactly the parts' concatenation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use jobs_core::blob::{BlobError, BlobStore};
use jobs_core::id::JobId;
use jobs_export::assemble::assemble;
use jobs_export::part::PartOutput;
use jobs_export::{ExportFormat, part_path, result_path};
use sha2::{Digest, Sha256};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Azurite's well-known development account (public, documented by Microsoft).
use jobs_core::testing::azurite;

/// Bytes that differ by part and by position, so a part out of order or a shifted range
/// shows.
fn content(seq: u32, len: usize) -> Vec<u8> {
    let mut state = u64::from(seq).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn put(blobs: &BlobStore, path: &str, bytes: &[u8]) {
    let mut w = blobs.writer(path).await.unwrap();
    for chunk in bytes.chunks(1024 * 1024) {
        w.write(chunk).await.unwrap();
    }
    w.finish().await.unwrap();
}

async fn get(blobs: &BlobStore, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = blobs.read(path).await.unwrap();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Writes parts of `sizes` bytes, assembles them and checks the result byte for byte.
async fn assembles_the_exact_concatenation(blobs: &BlobStore, sizes: &[usize]) {
    let job_id = JobId::new();
    let mut parts = Vec::new();
    let mut expected = Vec::new();
    for (seq, &size) in (0u32..).zip(sizes) {
        let path = part_path(job_id, seq, ExportFormat::Csv);
        let bytes = content(seq, size);
        put(blobs, &path, &bytes).await;
        expected.extend_from_slice(&bytes);
        parts.push(PartOutput {
            path,
            rows: u64::from(seq) + 1,
            bytes: size as u64,
        });
    }

    let result = assemble(blobs, job_id, ExportFormat::Csv, &parts)
        .await
        .unwrap();

    let sha256: String = Sha256::digest(&expected)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(result.path, result_path(job_id, ExportFormat::Csv));
    assert_eq!(result.bytes, expected.len() as u64);
    assert_eq!(result.sha256, sha256);
    assert_eq!(result.parts, sizes.len() as u32);
    assert_eq!(result.rows, (1..=sizes.len() as u64).sum::<u64>());
    let stored = get(blobs, &result.path).await;
    assert_eq!(stored.len(), expected.len());
    assert!(stored == expected, "the result differs from the parts");

    for part in &parts {
        blobs.delete(&part.path).await.unwrap();
    }
    blobs.delete(&result.path).await.unwrap();
}

/// Parts around the 4 MiB read and 8 MiB upload sizes, one empty.
const SIZES: [usize; 5] = [
    300_000,
    9 * 1024 * 1024 + 12_345,
    0,
    17,
    4 * 1024 * 1024 + 1,
];

/// Counts warnings from result assembly.
struct AssemblyWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for AssemblyWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target() == "jobs_export::assemble" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// One thread, so the test's (thread-local) subscriber sees every event.
#[tokio::test(flavor = "current_thread")]
async fn assemble_on_azure_is_the_exact_concatenation_of_the_parts() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _logs = tracing_subscriber::registry()
        .with(AssemblyWarnings(warnings.clone()))
        .set_default();
    let blobs = azurite();
    assert!(blobs.can_compose(), "an account key signs URLs");
    assembles_the_exact_concatenation(&blobs, &SIZES).await;
    // Again on the same store: server-side again, or (after a 501) streamed straight away.
    assembles_the_exact_concatenation(&blobs, &SIZES[..2]).await;
    let warned = warnings.load(Ordering::Relaxed);
    if blobs.can_compose() {
        assert_eq!(
            warned, 0,
            "server-side assembly worked, yet a fallback was logged"
        );
    } else {
        assert_eq!(
            warned, 1,
            "a service without the operation is warned about once"
        );
    }
}

#[tokio::test]
async fn assemble_on_local_files_streams_the_parts() {
    let dir = std::env::temp_dir().join(format!("offload-assemble-{}", uuid::Uuid::new_v4()));
    let blobs = BlobStore::local(&dir).unwrap();
    assert!(!blobs.can_compose());
    assembles_the_exact_concatenation(&blobs, &SIZES).await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// Server-side concatenation either works, or the service's refusal names the operation
/// and status (Azurite 3.35 has no Put Block From URL: 501 APINotImplemented) and leaves
/// nothing behind. A 501 (rather than 403) also shows the signed destination URL was
/// accepted: Azurite authenticates before it dispatches.
#[tokio::test]
async fn compose_copies_server_side_or_names_the_refused_operation() {
    let blobs = azurite();
    let job_id = JobId::new();
    let sources = [
        part_path(job_id, 0, ExportFormat::Csv),
        part_path(job_id, 1, ExportFormat::Csv),
    ];
    let first = content(0, 70_000);
    let second = content(1, 5 * 1024 * 1024);
    put(&blobs, &sources[0], &first).await;
    put(&blobs, &sources[1], &second).await;
    let dest = result_path(job_id, ExportFormat::Csv);

    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    match blobs.compose(&dest, &refs).await {
        Ok(bytes) => {
            let expected = [first, second].concat();
            assert_eq!(bytes, expected.len() as u64);
            assert!(
                get(&blobs, &dest).await == expected,
                "composed bytes differ"
            );
            assert!(blobs.can_compose());
        }
        Err(e @ BlobError::Refused { status: 501, .. }) => {
            let msg = e.to_string();
            eprintln!("server-side copy refused: {msg}");
            assert!(msg.contains("Put Block From URL"), "{msg}");
            assert!(msg.contains("HTTP 501"), "{msg}");
            assert!(msg.contains(&dest), "{msg}");
            assert!(!msg.contains("sig="), "a signature in an error: {msg}");
            assert!(!blobs.can_compose(), "a 501 is remembered");
            let Err(BlobError::Io { source, .. }) = blobs.size(&dest).await else {
                panic!("a refused composition left an object");
            };
            assert!(matches!(source, object_store::Error::NotFound { .. }));
            let again = blobs.compose(&dest, &refs).await;
            assert!(matches!(again, Err(BlobError::NoServerCopy { .. })));
        }
        Err(e) => panic!("server-side copy failed otherwise: {e}"),
    }
    for path in sources.iter().chain([&dest]) {
        blobs.delete(path).await.unwrap();
    }
}
