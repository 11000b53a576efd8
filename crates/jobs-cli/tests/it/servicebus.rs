//! The Azure stack end to end: the Service Bus transport (against the in-repo double of
//! Service Bus's REST API) with Azure Blob Storage (Azurite) produces the same result as the
//! embedded stack (Postgres transport, local files); and a Service Bus outage when a job is
//! submitted delays the job without losing it (the outbox).

use jobs_cli::Roles;
use serde_json::json;
use servicebus_double::ServiceBusDouble;

use jobs_testkit::{Stack, THINGS_COLUMNS};

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

fn azure_toml(double: &ServiceBusDouble) -> String {
    format!(
        "[queue]\ntransport = \"servicebus\"\nservicebus_connection_string = \"{}\"\n\
         [blob]\nbackend = \"azure\"\nazure_connection_string = \"{AZURITE}\"\n\
         azure_container = \"offload-test\"\n",
        double.connection_string()
    )
}

async fn rows_in(stack: &Stack, table: &str) -> i64 {
    jobs_core::sqlx::query_scalar(&format!("SELECT count(*) FROM offload.{table}"))
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stacks_export_the_same_file() {
    let export = json!({"dataset": "things", "chunk_rows": 100});

    let local = Stack::start(Roles::ALL, "").await;
    let id = local.submit(export.clone()).await;
    let embedded = local.finished(&id).await;
    assert_eq!(embedded["status"], "succeeded", "{embedded}");
    let embedded_file = local.download(&id).await;
    local.stop().await;

    let double = ServiceBusDouble::start(Default::default()).await.unwrap();
    let azure = Stack::start(Roles::ALL, &azure_toml(&double)).await;
    let id = azure.submit(export).await;
    let job = azure.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    for field in ["rows", "bytes", "sha256", "parts"] {
        assert_eq!(job["result"][field], embedded["result"][field], "{field}");
    }
    let file = azure.download(&id).await;
    assert!(file == embedded_file, "the two stacks' files differ");
    let expected = azure
        .copy_out(
            &format!("SELECT {THINGS_COLUMNS} FROM public.things ORDER BY id"),
            "FORMAT csv, HEADER",
        )
        .await;
    assert!(
        file == expected,
        "{} vs {} bytes",
        file.len(),
        expected.len()
    );

    // Every message went through Service Bus: none through the Postgres queue tables.
    assert_eq!(rows_in(&azure, "queue_messages").await, 0);
    assert_eq!(rows_in(&azure, "queues").await, 0);
    assert!(double.requests() > 30, "{} requests", double.requests());
    azure.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_bus_outage_at_submit_delays_the_job_but_loses_nothing() {
    let mut double = ServiceBusDouble::start(Default::default()).await.unwrap();
    let stack = Stack::start(Roles::ALL, &azure_toml(&double)).await;
    double.stop().await;

    // Accepted while Service Bus is down: the job and its message commit in Postgres.
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 500}))
        .await;
    let (_, job) = stack.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["status"], "queued", "{job}");
    assert_eq!(rows_in(&stack, "outbox").await, 1);

    double.restart().await.unwrap();
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["rows"], 3000);
    assert_eq!(rows_in(&stack, "outbox").await, 0);
    stack.stop().await;
}

/// Service Bus's REST API cannot dead-letter on purpose: a message the worker must reject
/// is kept in Postgres with its reason and completed, so it neither loops nor vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_parked_in_postgres_not_lost_or_looping() {
    let double = ServiceBusDouble::start(Default::default()).await.unwrap();
    let stack = Stack::start(Roles::ALL, &azure_toml(&double)).await;
    let rt = stack.runtime();
    let garbage = jobs_queue::OutgoingMessage::new("garbage-1", "{not a work item");
    rt.transport
        .send(&rt.queues.work, &[garbage])
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rows_in(&stack, "parked_messages").await == 0 {
        assert!(std::time::Instant::now() < deadline, "never parked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (queue, id, body, reason): (String, String, Vec<u8>, String) = jobs_core::sqlx::query_as(
        "SELECT queue, message_id, body, reason FROM offload.parked_messages",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (
            queue.as_str(),
            id.as_str(),
            body.as_slice(),
            reason.as_str()
        ),
        (
            "offload.work",
            "garbage-1",
            b"{not a work item".as_slice(),
            "MalformedEnvelope"
        )
    );
    // Completed after it was parked: gone from the queue, not dead-lettered.
    loop {
        let depth = rt.transport.depth(&rt.queues.work).await.unwrap();
        if (depth.active, depth.dead_lettered) == (0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in the queue: {depth:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stack.stop().await;
}
