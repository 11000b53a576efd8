//! `PATCH /v1/schedules/{id}`: each field, the next-tick rule, refusals naming the field,
//! tenants kept apart, and the row lock an enqueuer's firing and a change share.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jobs_core::TenantId;
use jobs_core::schedule::Timetable;
use jobs_enqueuer::schedules::fire_due;
use jobs_testkit::Roles;
use serde_json::{Value, json};
use uuid::Uuid;

use jobs_testkit::schedules::{count, create, enqueuer, make_due, patch, schedule, utc};
use jobs_testkit::{KEY, Stack};

async fn patched(stack: &Stack, id: &str, body: Value) -> Value {
    let (status, doc) = patch(stack, id, &body, KEY).await;
    assert_eq!(status, 200, "{body} -> {doc}");
    doc
}

/// The first tick of `cron` in `tz` after `before`, checked against the first after `after`
/// too (the request ran between the two).
fn first_tick(cron: &str, tz: &str, before: DateTime<Utc>, after: DateTime<Utc>) -> Value {
    let tt = Timetable::parse(cron, tz).unwrap();
    let (lo, hi) = (
        tt.next_after(before).unwrap(),
        tt.next_after(after).unwrap(),
    );
    assert_eq!(
        lo, hi,
        "a tick fell while the request ran; run the test again"
    );
    json!(lo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_field_changes_alone_and_cron_or_timezone_moves_the_next_tick() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let created = create(&stack, &schedule("0 6 1,15 * *")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let unchanged = |doc: &Value, keys: &[&str]| {
        for k in keys {
            assert_eq!(doc[k], created[k], "{k} changed: {doc}");
        }
    };

    let renamed = patched(&stack, &id, json!({"name": "  monthly report  "})).await;
    assert_eq!(renamed["name"], "monthly report");
    unchanged(
        &renamed,
        &["cron", "timezone", "job", "enabled", "next_run_at"],
    );
    assert!(
        utc(renamed["updated_at"].as_str().unwrap()) > utc(created["updated_at"].as_str().unwrap())
    );

    // The job body is normalized as POST /v1/jobs normalizes it.
    let job = json!({"kind": "export", "export": {"dataset": "things", "format": "ndjson",
        "filter": {"label": "beta"}}, "notify": {"webhook_url": "https://example.com/h"}});
    let rejobbed = patched(&stack, &id, json!({"job": job})).await;
    assert_eq!(rejobbed["job"]["export"]["format"], "ndjson");
    assert_eq!(
        rejobbed["job"]["notify"]["webhook_url"],
        "https://example.com/h"
    );
    assert_ne!(rejobbed["job"], created["job"]);
    unchanged(&rejobbed, &["cron", "timezone", "enabled", "next_run_at"]);
    assert_eq!(rejobbed["name"], "monthly report");

    let before = Utc::now();
    let recron = patched(&stack, &id, json!({"cron": "30 18 * * *"})).await;
    let expected = first_tick("30 18 * * *", "Europe/Paris", before, Utc::now());
    assert_eq!(recron["cron"], "30 18 * * *");
    assert_eq!(recron["next_run_at"], expected);
    assert!(
        recron["next_run_at_local"]
            .as_str()
            .unwrap()
            .contains("T18:30:00+0")
    );
    unchanged(&recron, &["timezone", "enabled"]);
    assert_eq!(recron["job"], rejobbed["job"]);

    let before = Utc::now();
    let rezoned = patched(&stack, &id, json!({"timezone": "Asia/Tokyo"})).await;
    let expected = first_tick("30 18 * * *", "Asia/Tokyo", before, Utc::now());
    assert_eq!(rezoned["next_run_at"], expected);
    assert!(
        rezoned["next_run_at_local"]
            .as_str()
            .unwrap()
            .ends_with("T18:30:00+09:00")
    );
    assert_eq!(rezoned["cron"], "30 18 * * *");

    let paused = patched(&stack, &id, json!({"enabled": false})).await;
    assert_eq!(
        (&paused["enabled"], &paused["next_run_at"]),
        (&json!(false), &Value::Null)
    );
    // A paused schedule's timing can change; it stays paused.
    let still = patched(&stack, &id, json!({"cron": "0 7 * * MON-FRI"})).await;
    assert_eq!(
        (&still["enabled"], &still["next_run_at"]),
        (&json!(false), &Value::Null)
    );
    let before = Utc::now();
    let resumed = patched(&stack, &id, json!({"enabled": true})).await;
    let expected = first_tick("0 7 * * MON-FRI", "Asia/Tokyo", before, Utc::now());
    assert_eq!(
        (&resumed["enabled"], &resumed["next_run_at"]),
        (&json!(true), &expected)
    );

    // Several at once; `{}` changes nothing. What PATCH answers is what is stored.
    let all = patched(
        &stack,
        &id,
        json!({"name": "all", "cron": "0 6 1,15 * *", "timezone": "Europe/Paris", "enabled": true}),
    )
    .await;
    assert_eq!(all["next_run_at"], created["next_run_at"]);
    let same = patched(&stack, &id, json!({})).await;
    let (_, got) = stack.get(&format!("/v1/schedules/{id}")).await;
    for doc in [&same, &got] {
        for k in ["name", "cron", "timezone", "job", "enabled", "next_run_at"] {
            assert_eq!(doc[k], all[k], "{k}");
        }
    }
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_tick_survives_a_rename_and_is_dropped_by_a_new_timetable() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let ctx = enqueuer(&stack);
    let id = create(&stack, &schedule("0 6 * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    make_due(&stack, &id, "2026-01-01T05:00:00Z").await;

    // Not a timing change: the due tick stays, and fires with the new job.
    let job = json!({"kind": "export", "export": {"dataset": "things", "format": "ndjson"}});
    let doc = patched(
        &stack,
        &id,
        json!({"name": "renamed", "cron": "0 6 * * *", "timezone": "Europe/Paris", "job": job}),
    )
    .await;
    assert_eq!(doc["next_run_at"], "2026-01-01T05:00:00Z");
    assert_eq!(fire_due(&ctx, Utc::now()).await.unwrap(), 1);
    let (_, fired) = stack.get(&format!("/v1/schedules/{id}")).await;
    let job_id: Uuid = fired["last_job_id"].as_str().unwrap().parse().unwrap();
    let format: String = jobs_core::sqlx::query_scalar(
        "SELECT params->'export'->>'format' FROM offload.jobs WHERE id = $1",
    )
    .bind(job_id)
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(format, "ndjson");

    // A new cron expression: the old timetable's due tick is not fired.
    make_due(&stack, &id, "2026-01-02T05:00:00Z").await;
    let doc = patched(&stack, &id, json!({"cron": "0 7 * * *"})).await;
    assert!(utc(doc["next_run_at"].as_str().unwrap()) > Utc::now());
    assert_eq!(fire_due(&ctx, Utc::now()).await.unwrap(), 0);
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 1);
    // Dropped, not counted as skipped.
    assert_eq!(doc["skipped_ticks"], fired["skipped_ticks"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_naming_the_field_and_change_nothing() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let created = create(&stack, &schedule("0 6 1,15 * *")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let job = |export: Value| json!({"job": {"kind": "export", "export": export}});
    let cases: Vec<(Value, &str)> = vec![
        (json!([1]), ""),
        (json!({"every": "day"}), "every"),
        (json!({"name": "ok", "id": created["id"]}), "id"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": null}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"cron": "61 * * * *"}), "cron"),
        (json!({"cron": "0 0 30 2 *"}), "cron"),
        (json!({"cron": "*/10 * * * * *"}), "cron"),
        (json!({"timezone": "Europe/Pariss"}), "timezone"),
        (json!({"timezone": null}), "timezone"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"job": "export"}), "job"),
        (json!({"job": {"kind": "mine"}}), "job.kind"),
        (json!({"job": {"kind": "export"}}), "job.export"),
        (job(json!({"dataset": "nope"})), "job.export.dataset"),
        (
            job(json!({"dataset": "things", "filter": {"amount": {"gte": "lots"}}})),
            "job.export.filter.amount.gte",
        ),
        // One bad field refuses the whole change.
        (json!({"name": "fine", "cron": "0 6 * *"}), "cron"),
        (
            json!({"name": "fine", "enabled": false, "timezone": "Mars/Olympus"}),
            "timezone",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = patch(&stack, &id, &body, KEY).await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["error"]["code"], "invalid", "{err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
    }
    let r = stack
        .http
        .patch(format!("{}/v1/schedules/{id}", stack.api))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (_, now) = stack.get(&format!("/v1/schedules/{id}")).await;
    for k in [
        "name",
        "cron",
        "timezone",
        "job",
        "enabled",
        "next_run_at",
        "updated_at",
    ] {
        assert_eq!(now[k], created[k], "{k}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_schedule_is_not_found_and_not_changed() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let created = create(&stack, &schedule("0 6 * * *")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let store = &stack.runtime().store;
    let other = TenantId::parse("other").unwrap();
    store.ensure_tenant(&other, None).await.unwrap();
    store.add_api_key(&other, "other-key").await.unwrap();
    for body in [
        json!({"name": "mine now"}),
        json!({"enabled": false}),
        json!({}),
    ] {
        let (status, err) = patch(&stack, &id, &body, "other-key").await;
        assert_eq!(status, 404, "{err}");
        assert_eq!(err["error"]["message"], "no such schedule");
    }
    for missing in ["0193a5c4-7f1e-7cc2-9d4b-5b8e2f1a0000", "not-a-uuid"] {
        let (status, _) = patch(&stack, missing, &json!({"name": "x"}), KEY).await;
        assert_eq!(status, 404, "{missing}");
    }
    let (_, mine) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(
        (&mine["name"], &mine["enabled"]),
        (&created["name"], &json!(true))
    );
    assert_eq!(mine["updated_at"], created["updated_at"]);
    stack.stop().await;
}

/// An enqueuer firing holds the row (`FOR UPDATE`) until it commits; a change waits for it
/// and applies to the row as the firing left it, not to what it read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_a_firing_in_progress_and_builds_on_its_result() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = create(&stack, &schedule("0 6 * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid: Uuid = id.parse().unwrap();

    // A firing in progress: the row is locked, and moved on inside the transaction.
    let mut firing = stack.db.pool.begin().await.unwrap();
    jobs_core::sqlx::query("SELECT 1 FROM offload.schedules WHERE id = $1 FOR UPDATE")
        .bind(uuid)
        .execute(&mut *firing)
        .await
        .unwrap();
    let fired_next = "2030-01-01T05:00:00Z";
    jobs_core::sqlx::query(
        "UPDATE offload.schedules SET next_run_at = $2::timestamptz,
             last_run_at = now(), skipped_ticks = 2 WHERE id = $1",
    )
    .bind(uuid)
    .bind(fired_next)
    .execute(&mut *firing)
    .await
    .unwrap();

    let change = tokio::spawn({
        let (http, url) = (
            stack.http.clone(),
            format!("{}/v1/schedules/{id}", stack.api),
        );
        async move {
            let r = http
                .patch(url)
                .bearer_auth(KEY)
                .json(&json!({"name": "changed while firing"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    // The change is blocked on the row lock (seen in pg_stat_activity), not finished.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &stack,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE '%offload.schedules%'",
    )
    .await
        == 0
    {
        assert!(
            !change.is_finished(),
            "the change did not wait for the lock"
        );
        assert!(
            Instant::now() < deadline,
            "the change never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    firing.commit().await.unwrap();

    let (status, doc) = change.await.unwrap();
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["name"], "changed while firing");
    // Built on the fired row: its next tick and counters were not overwritten.
    assert_eq!(doc["next_run_at"], fired_next);
    assert_eq!(doc["skipped_ticks"], 2);
    assert!(doc["last_run_at"].is_string());
    stack.stop().await;
}
