//! Schedules firing: pause / resume / delete, one job per tick, missed ticks, exports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jobs_enqueuer::schedules::{fire_due, fire_until_stopped};
use jobs_testkit::Roles;
use serde_json::{Value, json};
use servicebus_double::ServiceBusDouble;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use jobs_testkit::schedules::{
    count, create, delete, enqueuer, export_job, make_due, schedule, utc,
};
use jobs_testkit::{KEY, Stack, THINGS_COLUMNS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_schedules_do_not_fire_resumed_ones_do_deleted_ones_are_gone() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let ctx = enqueuer(&stack);
    let id = create(&stack, &schedule("*/5 * * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (s, paused) = stack
        .post(&format!("/v1/schedules/{id}/pause"), &json!({}))
        .await;
    assert_eq!(s, 200, "{paused}");
    assert_eq!(
        (&paused["enabled"], &paused["next_run_at"]),
        (&json!(false), &Value::Null)
    );
    // Even with a tick in the past, a paused schedule is not claimed.
    make_due(&stack, &id, "2026-01-01T00:00:00Z").await;
    assert_eq!(fire_due(&ctx, Utc::now()).await.unwrap(), 0);
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 0);

    // Resumed: from the first tick after now (what fell while paused is not run).
    let (s, resumed) = stack
        .post(&format!("/v1/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(s, 200, "{resumed}");
    assert_eq!(resumed["enabled"], true);
    let next = utc(resumed["next_run_at"].as_str().unwrap());
    assert!(next > Utc::now() && next <= Utc::now() + chrono::Duration::minutes(5));
    // Resuming again changes nothing.
    let (_, again) = stack
        .post(&format!("/v1/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(again["next_run_at"], resumed["next_run_at"]);
    assert_eq!(
        fire_due(&ctx, Utc::now()).await.unwrap(),
        0,
        "nothing is due yet"
    );
    make_due(&stack, &id, "2026-01-01T00:00:00Z").await;
    assert_eq!(fire_due(&ctx, Utc::now()).await.unwrap(), 1);
    let (_, fired) = stack.get(&format!("/v1/schedules/{id}")).await;
    let job_id = fired["last_job_id"].as_str().unwrap().to_owned();
    assert_eq!(fired["runs"][0]["job_id"], job_id);
    assert_eq!(fired["runs"][0]["job_status"], "queued");
    assert!(utc(fired["next_run_at"].as_str().unwrap()) > Utc::now());

    assert_eq!(
        delete(&stack, &format!("/v1/schedules/{id}"), KEY).await,
        204
    );
    assert_eq!(stack.get(&format!("/v1/schedules/{id}")).await.0, 404);
    assert_eq!(
        delete(&stack, &format!("/v1/schedules/{id}"), KEY).await,
        404
    );
    assert_eq!(
        count(&stack, "SELECT count(*) FROM offload.schedule_runs").await,
        0
    );
    // The job it made stays.
    assert_eq!(stack.get(&format!("/v1/jobs/{job_id}")).await.0, 200);
    assert_eq!(fire_due(&ctx, Utc::now()).await.unwrap(), 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_each_schedule_fires_once_for_its_latest_tick_whoever_claims_it() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let doc = create(
            &stack,
            &json!({"name": "minutely", "cron": "* * * * *", "timezone": "UTC", "job": export_job()}),
        )
        .await;
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    // Down since 11:50: eleven ticks (11:50 … 12:00) have passed at 12:00:30.
    jobs_core::sqlx::query("UPDATE offload.schedules SET next_run_at = '2026-01-01T11:50:00Z'")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let now = utc("2026-01-01T12:00:30Z");
    // Four enqueuers come back at once.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let ctx = enqueuer(&stack);
        set.spawn(async move { fire_due(&ctx, now).await.unwrap() });
    }
    let mut claims = 0;
    while let Some(n) = set.join_next().await {
        claims += n.unwrap();
    }
    assert_eq!(claims, 20);
    assert_eq!(fire_due(&enqueuer(&stack), now).await.unwrap(), 0);
    for id in &ids {
        let (_, s) = stack.get(&format!("/v1/schedules/{id}")).await;
        assert_eq!(s["last_run_at"], "2026-01-01T12:00:00Z", "{s}");
        assert_eq!(s["skipped_ticks"], 10, "{s}");
        assert_eq!(s["next_run_at"], "2026-01-01T12:01:00Z", "{s}");
        let runs = s["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{s}");
        assert_eq!(runs[0]["skipped"], 10);
        let key: String =
            jobs_core::sqlx::query_scalar("SELECT idempotency_key FROM offload.jobs WHERE id = $1")
                .bind(runs[0]["job_id"].as_str().unwrap().parse::<Uuid>().unwrap())
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        assert_eq!(key, format!("schedule:{id}:2026-01-01T12:00:00Z"));
    }
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 20);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueuer_loops_make_exactly_one_job_per_tick() {
    let stack = Stack::start(
        Roles::API_ONLY,
        "[schedules]\ntick_interval_ms = 100\nallow_sub_minute = true",
    )
    .await;
    let doc = create(
        &stack,
        &json!({"name": "every second", "cron": "* * * * * *", "timezone": "UTC", "job": export_job()}),
    )
    .await;
    let id: Uuid = doc["id"].as_str().unwrap().parse().unwrap();
    let stop = CancellationToken::new();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..4 {
        loops.spawn(fire_until_stopped(
            std::sync::Arc::new(enqueuer(&stack)),
            stop.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&stack, "SELECT count(*) FROM offload.schedule_runs").await < 8 {
        assert!(
            Instant::now() < deadline,
            "the schedule did not fire 8 times"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    while loops.join_next().await.is_some() {}

    type Run = (DateTime<Utc>, Option<Uuid>, i64);
    let runs: Vec<Run> = jobs_core::sqlx::query_as(
        "SELECT tick_at, job_id, skipped FROM offload.schedule_runs ORDER BY tick_at",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    let jobs: Vec<(Uuid, String)> = jobs_core::sqlx::query_as(
        "SELECT id, idempotency_key FROM offload.jobs ORDER BY created_at",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    // One job per recorded tick, and the other way round.
    assert_eq!(jobs.len(), runs.len());
    let run_jobs: BTreeSet<Uuid> = runs.iter().map(|r| r.1.unwrap()).collect();
    assert_eq!(run_jobs, jobs.iter().map(|j| j.0).collect());
    for (tick, job, _) in &runs {
        let key = &jobs.iter().find(|j| Some(j.0) == *job).unwrap().1;
        let tick = tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(key, &format!("schedule:{id}:{tick}"));
    }
    // Every second between the first and the last run either fired or was skipped, once.
    for w in runs.windows(2) {
        let gap = (w[1].0 - w[0].0).num_seconds();
        assert_eq!(gap, w[1].2 + 1, "ticks {} and {}", w[0].0, w[1].0);
    }
    let total_skipped: i64 = runs.iter().map(|r| r.2).sum();
    let (_, s) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(s["skipped_ticks"], total_skipped, "{s}");
    // And one job.requested message per job, sent with it.
    let messages = count(
        &stack,
        "SELECT count(*) FROM offload.queue_messages m JOIN offload.queues q ON q.id = m.queue_id
         WHERE q.name = 'offload.jobs'",
    )
    .await;
    assert_eq!(messages as usize, jobs.len());
    stack.stop().await;
}

/// Fires the schedule's tick now (as the enqueuer's loop does when its time comes) and
/// waits for the job it makes to finish.
async fn fire_and_finish(stack: &Stack, id: &str) -> Value {
    make_due(
        stack,
        id,
        &(Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let job_id = loop {
        let (_, s) = stack.get(&format!("/v1/schedules/{id}")).await;
        if let Some(j) = s["last_job_id"].as_str() {
            break j.to_owned();
        }
        assert!(Instant::now() < deadline, "the schedule did not fire: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stack.finished(&job_id).await
}

async fn assert_export_matches_copy(stack: &Stack, job: &Value) {
    assert_eq!(job["status"], "succeeded", "{job}");
    let file = stack.download(job["id"].as_str().unwrap()).await;
    let expected = stack
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_export_runs_and_succeeds() {
    let stack = Stack::start(Roles::ALL, "[schedules]\ntick_interval_ms = 100").await;
    let id = create(&stack, &schedule("0 6 1,15 * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = fire_and_finish(&stack, &id).await;
    assert_export_matches_copy(&stack, &job).await;
    let (_, s) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(s["runs"][0]["job_status"], "succeeded", "{s}");
    assert!(utc(s["next_run_at"].as_str().unwrap()) > Utc::now(), "{s}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_export_on_service_bus_goes_through_the_outbox() {
    let double = ServiceBusDouble::start(Default::default()).await.unwrap();
    let toml = format!(
        "[queue]\ntransport = \"servicebus\"\nservicebus_connection_string = \"{}\"\n\
         [schedules]\ntick_interval_ms = 100\n",
        double.connection_string()
    );
    let stack = Stack::start(Roles::ALL, &toml).await;
    let id = create(&stack, &schedule("0 6 1,15 * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = fire_and_finish(&stack, &id).await;
    assert_export_matches_copy(&stack, &job).await;
    assert_eq!(
        count(&stack, "SELECT count(*) FROM offload.outbox").await,
        0
    );
    stack.stop().await;
}
