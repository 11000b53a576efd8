//! Imports on Azure Blob Storage, for real against Azurite (started by the README's test
//! command): uploads through the API and straight to Blob Storage through a signed URL,
//! ranged reads of the upload, the rejects report behind a SAS link, and a direct upload
//! written again after it was recorded refused rather than read.

use serde_json::{Value, json};

use crate::import::{BAD_FILE, stack, upload};
use jobs_testkit::{KEY, Stack};

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

pub async fn azure_stack() -> Stack {
    // Ranges of 64 bytes: the bad file is three work items.
    stack(
        64,
        &format!(
            "[blob]\nbackend = \"azure\"\nazure_connection_string = \"{AZURITE}\"\nazure_container = \"offload-test\"\n"
        ),
    )
    .await
}

async fn import(stack: &Stack, upload_id: &str) -> Value {
    let (status, job) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": upload_id, "max_rejected": 10}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    stack.finished(job["id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reads_its_upload_from_blob_storage_in_ranges() {
    let stack = azure_stack().await;
    let upload_id = upload(&stack, BAD_FILE.as_bytes().to_vec()).await;
    let job = import(&stack, &upload_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["progress"]["total"].as_u64().unwrap() > 1, "{job}");
    // Key 1's second line is in another part than its first: rejected as loaded by it.
    assert_eq!(job["result"]["rejected"], 7);
    // The report is served by Blob Storage itself, through a short-lived SAS URL.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!(
            "{}/v1/jobs/{}/rejects",
            stack.api,
            job["id"].as_str().unwrap()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let sas = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        sas.starts_with("http://127.0.0.1:10000/devstoreaccount1/offload-test/imports/"),
        "{sas}"
    );
    let report = reqwest::get(&sas).await.unwrap().text().await.unwrap();
    assert!(report.starts_with("line,column,value,reason\n"), "{report}");
    assert!(report.contains("\n3,amount,not-a-number,"), "{report}");
    assert_eq!(report.lines().count(), 8);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_upload_goes_to_blob_storage_and_cannot_change_once_recorded() {
    let stack = azure_stack().await;
    let (status, direct) = stack.post("/v1/uploads/direct", &json!({})).await;
    assert_eq!(status, 201, "{direct}");
    let id = direct["upload_id"].as_str().unwrap().to_owned();
    let url = direct["upload_url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(&format!("/offload-test/uploads/dev/{id}?")),
        "{url}"
    );
    let complete = format!("/v1/uploads/{id}/complete");
    let (status, early) = stack.post(&complete, &json!({})).await;
    assert_eq!(
        (status, &early["error"]["code"]),
        (409, &json!("not_uploaded"))
    );

    let put = |body: &'static str| {
        reqwest::Client::new()
            .put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body)
            .send()
    };
    assert_eq!(put(BAD_FILE).await.unwrap().status().as_u16(), 201);
    let (status, recorded) = stack.post(&complete, &json!({})).await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["bytes"], BAD_FILE.len());
    let (status, again) = stack.post(&complete, &json!({})).await;
    assert_eq!((status, &again["sha256"]), (200, &recorded["sha256"]));

    let job = import(&stack, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let loaded =
        job["result"]["inserted"].as_u64().unwrap() + job["result"]["updated"].as_u64().unwrap();
    assert_eq!(
        (loaded, &job["result"]["rejected"]),
        (2, &json!(7)),
        "{job}"
    );

    // Written again through the URL (still valid): imports refuse it rather than read it.
    assert_eq!(
        put("id,label\n9,changed\n")
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    let (status, refused) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": id}}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["field"], "import.upload_id");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("written again")
    );
    stack.stop().await;
}
