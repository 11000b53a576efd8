//! The export on Azure Blob Storage, for real against Azurite (started by the README's test
//! command, `scripts/ensure-azurite.sh`, with the test container created): the same bytes
//! as on local files, and a download link that is a short-lived SAS URL.

use jobs_cli::Roles;
use serde_json::json;

use jobs_testkit::{KEY, Stack, THINGS_COLUMNS};

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_azure_blob_storage_with_an_expiring_sas_link() {
    let azure = format!(
        "[blob]\nbackend = \"azure\"\nazure_connection_string = \"{AZURITE}\"\nazure_container = \"offload-test\"\n\
         [download]\nlink_ttl_secs = 2"
    );
    let stack = Stack::start(Roles::ALL, &azure).await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 100}))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("{}/v1/jobs/{id}/result", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let sas = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        sas.starts_with("http://127.0.0.1:10000/devstoreaccount1/offload-test/exports/"),
        "{sas}"
    );
    assert!(sas.contains("sig="), "{sas}");

    // Fetched by a client that knows nothing of Offload: the same bytes as COPY.
    let got = plain.get(&sas).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    let bytes = got.bytes().await.unwrap();
    let expected = stack
        .copy_out(
            &format!("SELECT {THINGS_COLUMNS} FROM public.things ORDER BY id"),
            "FORMAT csv, HEADER",
        )
        .await;
    assert!(
        bytes.as_ref() == expected.as_slice(),
        "{} vs {} bytes",
        bytes.len(),
        expected.len()
    );
    assert_eq!(job["result"]["bytes"], expected.len());

    // The condition under test is the link's lifetime passing.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = plain.get(&sas).send().await.unwrap();
    assert_eq!(
        late.status().as_u16(),
        403,
        "an expired SAS link still worked"
    );
    stack.stop().await;
}
