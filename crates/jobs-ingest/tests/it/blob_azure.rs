//! Ingest's page files on both blob stores: local files and Azure Blob Storage, for real
//! against Azurite (started by the README's test command, `scripts/ensure-azurite.sh`).

use jobs_core::blob::BlobStore;
use jobs_core::testing::azurite;

/// A retried ingest partition that wrote fewer pages than an earlier attempt removes the
/// extra ones, and only those, on both stores.
#[tokio::test]
async fn stale_ingest_pages_are_removed_from_both_stores() {
    use jobs_ingest::fetch::remove_stale_pages;
    let dir = std::env::temp_dir().join(format!("offload-stale-{}", uuid::Uuid::new_v4()));
    let local = BlobStore::local(&dir).unwrap();
    for blobs in [local, azurite()] {
        let run = uuid::Uuid::new_v4();
        let prefix = format!("ingest/crm/{run}/1-500/");
        let neighbour = format!("ingest/crm/{run}/501-1000/page-000005.ndjson");
        for n in 1..=5 {
            let path = format!("{prefix}page-{n:06}.ndjson");
            jobs_ingest::put_object(&blobs, &path, b"{}\n".to_vec())
                .await
                .unwrap();
        }
        jobs_ingest::put_object(&blobs, &neighbour, b"{}\n".to_vec())
            .await
            .unwrap();
        remove_stale_pages(&blobs, &prefix, 3).await.unwrap();
        let mut left = blobs.list(&prefix).await.unwrap();
        left.sort();
        let expected: Vec<String> = (1..=3)
            .map(|n| format!("{prefix}page-{n:06}.ndjson"))
            .collect();
        assert_eq!(left, expected);
        assert_eq!(blobs.size(&neighbour).await.unwrap(), 3);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
