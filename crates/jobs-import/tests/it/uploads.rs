//! The uploads lifecycle through the API: listing a tenant's uploads a page at a time, and
//! deleting one — refused while an import reads it or a schedule names it, never across
//! tenants — on local files and on Azure Blob Storage (Azurite). Retention is in
//! `uploads_retention`.

use jobs_core::TenantId;
use jobs_import::upload_path;
use jobs_testkit::Roles;
use serde_json::{Value, json};

use crate::import::{stack, upload, upload_as};
use crate::import_azure::azure_stack;
use jobs_testkit::{KEY, Stack};

pub const FILE: &[u8] = b"id,label\n1,a\n2,b\n";

pub async fn delete_as(stack: &Stack, key: &str, id: &str) -> (u16, Value) {
    let resp = stack
        .http
        .delete(format!("{}/v1/uploads/{id}", stack.api))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Submits an import of `upload_id` into `things_copy`; returns the job id.
pub async fn submit_import(stack: &Stack, upload_id: &str) -> String {
    let (status, job) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": upload_id}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// Whether the upload's file is in the blob store.
pub async fn blob_exists(stack: &Stack, id: &str) -> bool {
    let path = upload_path(&TenantId::parse("dev").unwrap(), id.parse().unwrap());
    match stack.runtime().blobs.head(&path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("the blob store did not answer: {e}"),
    }
}

async fn other_tenant(stack: &Stack) {
    let store = &stack.runtime().store;
    let other = TenantId::parse("other").unwrap();
    store.ensure_tenant(&other, None).await.unwrap();
    store.add_api_key(&other, "other-key").await.unwrap();
}

fn ids(page: &Value) -> Vec<String> {
    page["uploads"]
        .as_array()
        .unwrap_or_else(|| panic!("no uploads in {page}"))
        .iter()
        .map(|u| u["upload_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_listed_newest_first_a_page_at_a_time_and_only_the_tenants_own() {
    let stack = stack(1024, "").await;
    other_tenant(&stack).await;
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(upload(&stack, format!("id,label\n{n},x\n").into_bytes()).await);
    }
    let (status, _) = upload_as(&stack, "other-key", FILE.to_vec()).await;
    assert_eq!(status, 201);

    let (status, first) = stack.get("/v1/uploads?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first), [mine[2].clone(), mine[1].clone()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = stack
        .get(&format!("/v1/uploads?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), [mine[0].clone()]);
    assert_eq!(second["next_cursor"], Value::Null);

    // Each shows its size, digest and when retention (7 days by default) may delete it.
    let newest = &first["uploads"][0];
    assert_eq!(newest["bytes"], 13);
    let created =
        chrono::DateTime::parse_from_rfc3339(newest["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(newest["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::days(7));

    for (query, field) in [("limit=0", "limit"), ("cursor=nonsense", "cursor")] {
        let (status, err) = stack.get(&format!("/v1/uploads?{query}")).await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (422, &json!(field)),
            "{err}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retention_off_uploads_do_not_expire() {
    let stack = stack(1024, "[uploads]\nretention_hours = 0\n").await;
    let id = upload(&stack, FILE.to_vec()).await;
    let (status, doc) = stack.get(&format!("/v1/uploads/{id}")).await;
    assert_eq!((status, &doc["expires_at"]), (200, &Value::Null), "{doc}");
    // Years old, and still kept by the enqueuers' sweep.
    jobs_core::sqlx::query(
        "UPDATE offload.uploads SET created_at = now() - interval '3 years' WHERE id = $1",
    )
    .bind(id.parse::<uuid::Uuid>().unwrap())
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let rt = stack.runtime();
    let swept = jobs_core::uploads::sweep(
        &rt.store,
        &rt.blobs,
        chrono::Utc::now(),
        rt.cfg.uploads.retention(),
    )
    .await
    .unwrap();
    assert_eq!(swept, jobs_core::uploads::Swept::default());
    assert_eq!(stack.get(&format!("/v1/uploads/{id}")).await.0, 200);
    assert!(blob_exists(&stack, &id).await);
    stack.stop().await;
}

/// The API alone, with `things_copy`: imports stay queued, so "an import reads it" holds
/// as long as a test needs.
pub async fn api_only(extra: &str) -> Stack {
    let stack = Stack::start(Roles::API_ONLY, &format!("{THINGS_COPY}{extra}")).await;
    jobs_core::sqlx::query("CREATE TABLE public.things_copy (LIKE public.things INCLUDING ALL)")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    stack
}

pub const THINGS_COPY: &str = "[datasets.things_copy]\ntable = \"public.things_copy\"\n\
    key = \"id\"\ncolumns = [\"id\", \"label\", \"note\", \"amount\", \"happened_at\", \"flag\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_deleted_with_its_file_but_not_while_an_import_reads_it() {
    let stack = api_only("").await;
    other_tenant(&stack).await;
    let id = upload(&stack, FILE.to_vec()).await;
    let job = submit_import(&stack, &id).await;

    // Queued import: refused, naming the job; nothing is deleted.
    let (status, err) = delete_as(&stack, KEY, &id).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (409, &json!("upload_in_use")),
        "{err}"
    );
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&job) && message.contains("queued"),
        "{message}"
    );
    assert!(blob_exists(&stack, &id).await);
    assert_eq!(stack.get(&format!("/v1/uploads/{id}")).await.0, 200);

    // Another tenant cannot delete it, nor learn that it exists.
    let (status, err) = delete_as(&stack, "other-key", &id).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (404, &json!("not_found")),
        "{err}"
    );

    // Once the import has finished (here: cancelled), it goes, file and record.
    let (status, _) = stack
        .post(&format!("/v1/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let (status, body) = delete_as(&stack, KEY, &id).await;
    assert_eq!(status, 204, "{body}");
    assert!(!blob_exists(&stack, &id).await);
    assert_eq!(stack.get(&format!("/v1/uploads/{id}")).await.0, 404);
    let (_, page) = stack.get("/v1/uploads").await;
    assert!(!ids(&page).contains(&id), "{page}");
    let rows: i64 =
        jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload.uploads WHERE id = $1")
            .bind(id.parse::<uuid::Uuid>().unwrap())
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(rows, 0);

    // Gone for good: a second delete and a new import find nothing.
    assert_eq!(delete_as(&stack, KEY, &id).await.0, 404);
    assert_eq!(delete_as(&stack, KEY, "not-an-id").await.0, 404);
    let (status, refused) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": id}}),
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["field"]),
        (422, &json!("import.upload_id"))
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_a_schedule_imports_is_not_deleted() {
    let stack = api_only("").await;
    let id = upload(&stack, FILE.to_vec()).await;
    let (status, schedule) = stack
        .post(
            "/v1/schedules",
            &json!({"name": "nightly reload", "cron": "0 3 * * *",
                    "job": {"kind": "import", "import": {"dataset": "things_copy", "upload_id": id}}}),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_id = schedule["id"].as_str().unwrap();
    let (status, err) = delete_as(&stack, KEY, &id).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (409, &json!("upload_in_use")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(schedule_id),
        "{err}"
    );

    let resp = stack
        .http
        .delete(format!("{}/v1/schedules/{schedule_id}", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(delete_as(&stack, KEY, &id).await.0, 204);
    assert!(!blob_exists(&stack, &id).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_deleted_from_blob_storage() {
    let stack = azure_stack().await;
    let id = upload(&stack, FILE.to_vec()).await;
    assert!(blob_exists(&stack, &id).await);
    let (status, body) = delete_as(&stack, KEY, &id).await;
    assert_eq!(status, 204, "{body}");
    assert!(!blob_exists(&stack, &id).await);
    assert_eq!(stack.get(&format!("/v1/uploads/{id}")).await.0, 404);
    stack.stop().await;
}
