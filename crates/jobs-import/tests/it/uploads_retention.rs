//! Upload retention and the order of a deletion: the sweep deletes expired uploads nothing
//! needs and finishes deletions a crash cut short; the enqueuer runs it by itself; an
//! import created while a deletion looks for users is seen by it (the row lock), and one
//! planned after a deletion began fails before reading a byte.

use std::time::{Duration, Instant};

use chrono::Utc;
use jobs_core::TenantId;
use jobs_core::store::UploadUse;
use jobs_core::uploads::{Deleted, Swept, delete_upload, sweep};
use jobs_enqueuer::{EnqueuerContext, Outcome, try_plan_next};
use jobs_testkit::Roles;
use serde_json::json;
use uuid::Uuid;

use crate::import::upload;
use crate::uploads::{FILE, THINGS_COPY, api_only, blob_exists, submit_import};
use jobs_testkit::Stack;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

fn dev() -> TenantId {
    TenantId::parse("dev").unwrap()
}

/// Moves the uploads' creation `days` into the past.
async fn age(stack: &Stack, ids: &[&str], days: i32) {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
    jobs_core::sqlx::query(
        "UPDATE offload.uploads SET created_at = now() - make_interval(days => $2)
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(days)
    .execute(&stack.db.pool)
    .await
    .unwrap();
}

async fn rows(stack: &Stack, id: &str) -> i64 {
    jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload.uploads WHERE id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

async fn sweep_now(stack: &Stack) -> Swept {
    let rt = stack.runtime();
    sweep(&rt.store, &rt.blobs, Utc::now(), Some(WEEK))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_expired_uploads_that_nothing_needs() {
    let stack = api_only("").await;
    let free = upload(&stack, FILE.to_vec()).await;
    let read = upload(&stack, FILE.to_vec()).await;
    let scheduled = upload(&stack, FILE.to_vec()).await;
    let fresh = upload(&stack, FILE.to_vec()).await;
    let job = submit_import(&stack, &read).await;
    let (status, schedule) = stack
        .post(
            "/v1/schedules",
            &json!({"name": "nightly", "cron": "0 3 * * *",
                    "job": {"kind": "import", "import": {"dataset": "things_copy", "upload_id": scheduled}}}),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    age(&stack, &[&free, &read, &scheduled], 8).await;
    age(&stack, &[&fresh], 6).await;

    let swept = sweep_now(&stack).await;
    assert_eq!(
        swept,
        Swept {
            expired: 1,
            resumed: 0,
            failed: 0,
            orphans: 0,
        }
    );
    assert!(!blob_exists(&stack, &free).await);
    assert_eq!(rows(&stack, &free).await, 0);
    for kept in [&read, &scheduled, &fresh] {
        assert!(blob_exists(&stack, kept).await, "{kept} was deleted");
        assert_eq!(stack.get(&format!("/v1/uploads/{kept}")).await.0, 200);
    }

    // The import finishes (cancelled): the next sweep takes its upload too.
    let (status, _) = stack
        .post(&format!("/v1/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(sweep_now(&stack).await.expired, 1);
    assert!(!blob_exists(&stack, &read).await);
    assert!(blob_exists(&stack, &scheduled).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_cut_short_is_hidden_at_once_and_finished_by_the_sweep() {
    let stack = api_only("").await;
    let id = upload(&stack, FILE.to_vec()).await;
    // The first step alone, as if the process died right after it.
    let rt = stack.runtime();
    let marked = rt
        .store
        .mark_upload_deleted(&dev(), id.parse().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(marked, jobs_core::store::MarkOutcome::Marked(_)),
        "{marked:?}"
    );
    assert_eq!(stack.get(&format!("/v1/uploads/{id}")).await.0, 404);
    let (status, refused) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "import", "import": {"dataset": "things_copy", "upload_id": id}}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(blob_exists(&stack, &id).await);

    // A deletion marked a moment ago may still be finishing in the API: left alone.
    assert_eq!(sweep_now(&stack).await, Swept::default());
    jobs_core::sqlx::query(
        "UPDATE offload.uploads SET deleted_at = now() - interval '5 minutes' WHERE id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap())
    .execute(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(sweep_now(&stack).await.resumed, 1);
    assert!(!blob_exists(&stack, &id).await);
    assert_eq!(rows(&stack, &id).await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueuer_sweeps_by_itself() {
    let stack = Stack::start(
        Roles::ALL,
        &format!("{THINGS_COPY}[uploads]\nsweep_interval_secs = 1\n"),
    )
    .await;
    let id = upload(&stack, FILE.to_vec()).await;
    age(&stack, &[&id], 8).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.get(&format!("/v1/uploads/{id}")).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the expired upload is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The record goes last: once it is gone, so is the file.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(&stack, &id).await != 0 {
        assert!(Instant::now() < deadline, "the deletion did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!blob_exists(&stack, &id).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_created_while_a_deletion_looks_is_seen_by_it() {
    let stack = api_only("").await;
    let id = upload(&stack, FILE.to_vec()).await;
    let pool = stack.db.pool.clone();
    // An import job being created: its insert takes a share lock on the upload's row.
    let mut tx = pool.begin().await.unwrap();
    let job_id = Uuid::now_v7();
    jobs_core::sqlx::query(
        "INSERT INTO offload.jobs (id, tenant_id, kind, params) VALUES ($1, 'dev', 'import', $2)",
    )
    .bind(job_id)
    .bind(json!({"import": {"dataset": "things_copy", "upload_id": id}}))
    .execute(&mut *tx)
    .await
    .unwrap();

    let rt = stack.runtime();
    let (store, blobs) = (rt.store.clone(), rt.blobs.clone());
    let upload_id: Uuid = id.parse().unwrap();
    let deletion =
        tokio::spawn(async move { delete_upload(&store, &blobs, &dev(), upload_id).await });
    // The deletion waits on the row lock until the job commits.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = jobs_core::sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%FOR UPDATE%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !deletion.is_finished(),
            "the deletion did not wait for the import"
        );
        assert!(
            Instant::now() < deadline,
            "the deletion never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.commit().await.unwrap();
    let outcome = deletion.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        Deleted::InUse(UploadUse::Job {
            job_id,
            kind: "import".into(),
            status: "queued".into()
        })
    );
    assert!(blob_exists(&stack, &id).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_planned_after_its_upload_began_to_be_deleted_fails_without_reading_it() {
    let stack = api_only("").await;
    let id = upload(&stack, FILE.to_vec()).await;
    let job = submit_import(&stack, &id).await;
    // What a deletion marked between the import's validation and its insert leaves.
    jobs_core::sqlx::query("UPDATE offload.uploads SET deleted_at = now() WHERE id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let ctx = EnqueuerContext::from_runtime(stack.runtime(), jobs_builtins::kinds().job_types);
    assert_eq!(
        try_plan_next(&ctx, Duration::from_secs(5)).await.unwrap(),
        Outcome::Processed
    );
    let (_, doc) = stack.get(&format!("/v1/jobs/{job}")).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("was deleted"),
        "{doc}"
    );
    stack.stop().await;
}

/// Makes the upload `id`'s file look written `days` ago (local files).
fn backdate_file(stack: &Stack, id: &str, days: u64) {
    let path = stack
        .blob_root
        .join(jobs_import::upload_path(&dev(), id.parse().unwrap()));
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let when = std::time::SystemTime::now() - Duration::from_secs(days * 24 * 3600);
    file.set_modified(when).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_old_files_that_no_upload_records() {
    let stack = api_only("").await;
    let blobs = &stack.runtime().blobs;
    // Files with no row, as a direct upload never completed leaves: one old, one new.
    let (old, new) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    for id in [&old, &new] {
        let path = jobs_import::upload_path(&dev(), id.parse().unwrap());
        jobs_ingest::put_object(blobs, &path, FILE.to_vec())
            .await
            .unwrap();
    }
    backdate_file(&stack, &old, 8);
    // A recorded upload whose file is as old: its row keeps it.
    let recorded = upload(&stack, FILE.to_vec()).await;
    backdate_file(&stack, &recorded, 8);

    let swept = sweep_now(&stack).await;
    assert_eq!(
        swept,
        Swept {
            expired: 0,
            resumed: 0,
            failed: 0,
            orphans: 1,
        }
    );
    assert!(!blob_exists(&stack, &old).await);
    assert!(blob_exists(&stack, &new).await);
    assert!(blob_exists(&stack, &recorded).await);
    assert_eq!(stack.get(&format!("/v1/uploads/{recorded}")).await.0, 200);
    // Retention off: nothing of the kind is deleted.
    backdate_file(&stack, &new, 30);
    let rt = stack.runtime();
    let off = sweep(&rt.store, &rt.blobs, Utc::now(), None).await.unwrap();
    assert_eq!(off.orphans, 0);
    assert!(blob_exists(&stack, &new).await);
    stack.stop().await;
}
