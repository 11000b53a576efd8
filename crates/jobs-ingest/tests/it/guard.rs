//! A source with `allow_private_networks = false` never reaches loopback, private or
//! link-local addresses, whether its base URL names one or resolves to one; with the
//! default (`true`) the same source is read.

use jobs_core::config::SourceConfig;
use jobs_ingest::client::SourceClient;
use mock_source::{MockSource, MockSourceOptions};
use serde_json::json;

fn source(base_url: &str, allow_private_networks: bool) -> SourceConfig {
    serde_json::from_value(json!({
        "base_url": base_url,
        "allow_private_networks": allow_private_networks,
        "max_attempts": 1,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_only_source_refuses_internal_addresses() {
    let mock = MockSource::start(MockSourceOptions {
        records: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let literal = mock.base_url(); // http://127.0.0.1:PORT
    let named = literal.replace("127.0.0.1", "localhost");
    for url in [&literal, &named] {
        let open = SourceClient::new("open", &source(url, true)).unwrap();
        open.get_json("/records", &[]).await.unwrap();
        let guarded = SourceClient::new("guarded", &source(url, false)).unwrap();
        let err = guarded
            .get_json("/records", &[])
            .await
            .expect_err("an internal address was reached");
        assert!(
            format!("{err:?}").contains("refused"),
            "{url}: the error says why: {err:?}"
        );
    }
    let stats = mock.stats();
    assert_eq!(
        stats.requests, 2,
        "only the two open clients reached the source: {stats:?}"
    );
}
