//! Cancelling stops work for real: items not yet processed are skipped, not run.

use jobs_cli::Parts;
use serde_json::json;

use crate::api::jobs_cli_worker;
use crate::support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_skips_its_remaining_items() {
    // No worker yet: the job gets planned and then waits.
    let stack = Stack::start(
        Parts {
            enqueuer: true,
            worker: false,
            notifier: true,
        },
        "",
    )
    .await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 100}))
        .await;
    stack.wait_for(&id, |j| j["status"] == "running").await;
    let (status, job) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (202, Some("cancelling")),
        "{job}"
    );
    let worker = jobs_cli_worker(&stack);
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(
        job["progress"]["done"], 0,
        "a cancelled job's items were processed: {job}"
    );
    assert_eq!(job["progress"]["skipped"], job["progress"]["total"]);
    assert!(job.get("result").is_none());
    // Cancelling again is harmless; a finished job is not cancellable.
    let (status, _) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    worker.cancel();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_at_once_and_finished_ones_refuse() {
    let stack = Stack::start(
        Parts {
            enqueuer: false,
            worker: false,
            notifier: false,
        },
        "",
    )
    .await;
    let id = stack.submit(json!({"dataset": "things"})).await;
    let (status, job) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (202, Some("cancelled")),
        "{job}"
    );
    assert!(job["finished_at"].is_string());
    stack.stop().await;

    let stack = Stack::start(Parts::ALL, "").await;
    let id = stack.submit(json!({"dataset": "things"})).await;
    assert_eq!(stack.finished(&id).await["status"], "succeeded");
    let (status, body) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_cancellable"))
    );
    stack.stop().await;
}
