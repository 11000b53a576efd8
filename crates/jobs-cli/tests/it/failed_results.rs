//! What `GET /v1/jobs/{id}/result` and `…/rejects` answer when there is no file to give:
//! a failed job's own error and what to do, a cancelled job's fate, an import's "no result
//! file" — in the JSON error format, never a redirect to a link that then answers 410.

use jobs_cli::Roles;
use serde_json::{Value, json};

use jobs_testkit::upload;
use jobs_testkit::{KEY, Stack};

const THINGS_COPY: &str = "[datasets.things_copy]\ntable = \"public.things_copy\"\nkey = \"id\"\n\
     columns = [\"id\", \"label\", \"note\", \"amount\", \"happened_at\", \"flag\"]\n";

/// `GET /v1/jobs/{id}/{file}` without following a redirect: status, `Location`, body.
async fn file_of(stack: &Stack, id: &str, file: &str) -> (u16, Option<String>, Value) {
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirect
        .get(format!("{}/v1/jobs/{id}/{file}", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, resp.json().await.unwrap_or(Value::Null))
}

async fn things_copy(stack: &Stack) {
    jobs_core::sqlx::query("CREATE TABLE public.things_copy (LIKE public.things INCLUDING ALL)")
        .execute(&stack.db.pool)
        .await
        .unwrap();
}

async fn submit_import(stack: &Stack, upload_id: &str) -> String {
    let (status, job) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": upload_id}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_answers_with_its_error_not_no_rows_rejected() {
    // No worker yet, and one delivery per item: the import is planned, then its file goes
    // away, and its one item fails and is dead-lettered on its first delivery.
    let stack = Stack::start(
        Roles {
            enqueuer: true,
            notifier: true,
            ..Roles::API_ONLY
        },
        &format!("[queue]\nmax_delivery_count = 1\n{THINGS_COPY}"),
    )
    .await;
    things_copy(&stack).await;
    let upload_id = upload(&stack, b"id,label\n1,a\n2,b\n".to_vec()).await;
    let id = submit_import(&stack, &upload_id).await;
    stack.wait_for(&id, |j| j["status"] == "running").await;
    let tenant = jobs_core::TenantId::parse(&stack.runtime().cfg.auth.dev_tenant).unwrap();
    let blob = jobs_import::upload_path(&tenant, upload_id.parse().unwrap());
    std::fs::remove_file(stack.blob_root.join(blob)).unwrap();
    let worker = stack.start_worker();
    let job = stack.finished(&id).await;
    worker.cancel();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["progress"]["failed"], 1, "{job}");
    let error = job["error"].as_str().unwrap();

    for file in ["rejects", "result"] {
        let (status, location, body) = file_of(&stack, &id, file).await;
        assert_eq!(location, None, "{file}: a link for a failed job");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("job_failed")),
            "{file}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(error),
            "{file}: the job's own error is missing: {message}"
        );
        assert!(
            message.contains(&format!("POST /v1/jobs/{id}/retry-failed")),
            "{file}: what to do is missing: {message}"
        );
        assert!(!message.contains("rejected no rows"), "{file}: {message}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_without_a_file_are_errors_not_links() {
    let stack = Stack::start(Roles::ALL, THINGS_COPY).await;
    things_copy(&stack).await;

    // An import that succeeded: its result is its counts, not a file.
    let upload_id = upload(&stack, b"id,label\n1,a\n2,b\n".to_vec()).await;
    let id = submit_import(&stack, &upload_id).await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, location, body) = file_of(&stack, &id, "result").await;
    assert_eq!(
        location, None,
        "a link to a file that does not exist: {body}"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_result_file")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("GET /v1/jobs/{id}")),
        "{body}"
    );
    let (status, _, body) = file_of(&stack, &id, "rejects").await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            404,
            Some("the import rejected no rows: it has no rejects report")
        )
    );

    // An export has no rejects report at all.
    let export = stack.submit(json!({"dataset": "things"})).await;
    assert_eq!(stack.finished(&export).await["status"], "succeeded");
    let (status, _, body) = file_of(&stack, &export, "rejects").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_rejects_report")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only kinds that reject input rows"),
        "{body}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_says_so() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = stack.submit(json!({"dataset": "things"})).await;
    let (status, job) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(job["status"], "cancelled", "{status}: {job}");
    let (status, location, body) = file_of(&stack, &id, "result").await;
    assert_eq!(location, None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("job_cancelled")),
        "{body}"
    );
    stack.stop().await;
}
