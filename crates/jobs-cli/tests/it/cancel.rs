//! Cancelling stops work for real: items not yet processed are skipped, not run.

use jobs_cli::Roles;
use serde_json::json;

use jobs_testkit::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_skips_its_remaining_items() {
    // No worker yet: the job gets planned and then waits.
    let stack = Stack::start(
        Roles {
            enqueuer: true,
            notifier: true,
            ..Roles::API_ONLY
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
    let worker = stack.start_worker();
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
    let stack = Stack::start(Roles::API_ONLY, "").await;
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
    // Its finished event was written with the status, once: cancelling again adds none.
    let (status, _) = stack
        .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let rt = stack.runtime();
    let events = rt
        .transport
        .receive(&rt.queues.events, 10, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let finished: Vec<_> = events
        .iter()
        .map(|m| jobs_queue::messages::JobMessage::decode(&m.body).unwrap())
        .filter(|e| matches!(e, jobs_queue::messages::JobMessage::Finished { job_id, .. } if job_id.to_string() == id))
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    stack.stop().await;

    let stack = Stack::start(Roles::ALL, "").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_dead_lettered_behind_the_workers_back_still_finishes_its_job() {
    use jobs_queue::MAX_DELIVERY_REASON;
    let stack = Stack::start(
        Roles {
            enqueuer: true,
            ..Roles::API_ONLY
        },
        "",
    )
    .await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 1000}))
        .await;
    stack.wait_for(&id, |j| j["status"] == "running").await;
    // As if a worker died on an item's last permitted delivery: its message lands in the
    // dead-letter queue and nobody counts it.
    let rt = stack.runtime();
    let msg = rt
        .transport
        .receive(&rt.queues.work, 1, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    rt.transport
        .dead_letter(
            &rt.queues.work,
            &msg.lock,
            MAX_DELIVERY_REASON,
            "lock expired",
        )
        .await
        .unwrap();
    let worker = stack.start_worker();
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["progress"]["failed"], 1, "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("dead-lettered"),
        "{job}"
    );
    worker.cancel();
    stack.stop().await;
}
