//! Creating, listing and refusing schedules; tenants kept apart.

use chrono::{DateTime, Utc};
use jobs_core::TenantId;
use jobs_testkit::Roles;
use serde_json::{Value, json};

use jobs_testkit::schedules::{count, create, export_job, schedule, utc};
use jobs_testkit::{KEY, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_created_with_its_next_run_in_utc_and_local_time() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let resp = stack
        .http
        .post(format!("{}/v1/schedules", stack.api))
        .bearer_auth(KEY)
        .json(&json!({
            "name": "approved expenses", "cron": "0 6 1,15 * *", "timezone": "Europe/Paris",
            "job": {"kind": "export", "export": {"dataset": "things", "filter": {"label": "beta"}},
                    "notify": {"webhook_url": "https://example.com/hooks/offload"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/schedules/{}", doc["id"].as_str().unwrap())
    );
    assert_eq!(doc["enabled"], true);
    assert_eq!(doc["timezone"], "Europe/Paris");
    // The job request as it will be submitted: normalized like a POST /v1/jobs body.
    assert_eq!(doc["job"]["kind"], "export");
    assert_eq!(doc["job"]["export"]["format"], "csv");
    assert_eq!(
        doc["job"]["notify"]["webhook_url"],
        "https://example.com/hooks/offload"
    );
    let next = utc(doc["next_run_at"].as_str().unwrap());
    let local = DateTime::parse_from_rfc3339(doc["next_run_at_local"].as_str().unwrap()).unwrap();
    assert!(next > Utc::now());
    assert_eq!(local.with_timezone(&Utc), next);
    assert_eq!(local.format("%H:%M").to_string(), "06:00");
    assert!(["01", "15"].contains(&local.format("%d").to_string().as_str()));
    assert_eq!(doc["skipped_ticks"], 0);

    // Listed, newest first, a page at a time.
    create(&stack, &schedule("0 7 * * *")).await;
    create(&stack, &schedule("30 0 8 * * *")).await; // seconds: one value is fine
    let (_, page) = stack.get("/v1/schedules?limit=2").await;
    let crons: Vec<&str> = page["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cron"].as_str().unwrap())
        .collect();
    assert_eq!(crons, ["30 0 8 * * *", "0 7 * * *"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = stack
        .get(&format!("/v1/schedules?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["schedules"][0]["id"], doc["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    // No job was made: schedules fire in the enqueuer, and none is running.
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_naming_the_field() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let with = |key: &str, value: Value| {
        let mut body = schedule("0 6 1,15 * *");
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = schedule("0 6 1,15 * *");
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([1]), ""),
        (with("every", json!("day")), "every"),
        (without("name"), "name"),
        (with("name", json!("   ")), "name"),
        (with("name", json!("x".repeat(201))), "name"),
        (without("cron"), "cron"),
        (with("cron", json!(6)), "cron"),
        (with("cron", json!("0 6 1,15 *")), "cron"),
        (with("cron", json!("61 * * * *")), "cron"),
        (with("cron", json!("0 0 30 2 *")), "cron"), // never happens
        (with("cron", json!("*/10 * * * * *")), "cron"), // every 10 s: not by default
        (with("timezone", json!("Europe/Pariss")), "timezone"),
        (with("timezone", json!("+02:00")), "timezone"),
        (without("job"), "job"),
        (with("job", json!("export")), "job"),
        (
            with("job", json!({"export": {"dataset": "things"}})),
            "job.kind",
        ),
        (with("job", json!({"kind": "mine"})), "job.kind"),
        (with("job", json!({"kind": "export"})), "job.export"),
        (
            with(
                "job",
                json!({"kind": "export", "export": {"dataset": "nope"}}),
            ),
            "job.export.dataset",
        ),
        (
            with(
                "job",
                json!({"kind": "export", "export": {"dataset": "things", "filter": {"amount": {"gte": "lots"}}}}),
            ),
            "job.export.filter.amount.gte",
        ),
        (
            with(
                "job",
                json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": "ftp://x"}}),
            ),
            "job.notify.webhook_url",
        ),
        (
            with(
                "job",
                json!({"kind": "export", "export": {"dataset": "things"}, "x": 1}),
            ),
            "job.x",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = stack.post("/v1/schedules", &body).await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["error"]["code"], "invalid", "{err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
    }
    let r = stack
        .http
        .post(format!("{}/v1/schedules", stack.api))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = stack
        .http
        .post(format!("{}/v1/schedules", stack.api))
        .json(&schedule("0 6 * * *"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for (path, status) in [
        ("/v1/schedules?limit=0", 422),
        ("/v1/schedules?cursor=garbage", 422),
        ("/v1/schedules/not-a-uuid", 404),
        ("/v1/schedules/0193a5c4-7f1e-7cc2-9d4b-5b8e2f1a0000", 404),
    ] {
        let (s, body) = stack.get(path).await;
        assert_eq!(s, status, "{path}: {body}");
    }
    // The idempotency keys of scheduled jobs cannot be taken by a submission.
    let r = stack
        .http
        .post(format!("{}/v1/jobs", stack.api))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "schedule:anything")
        .json(&export_job())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(
        count(&stack, "SELECT count(*) FROM offload.schedules").await,
        0
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM offload.jobs").await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_schedules() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = create(&stack, &schedule("0 6 * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = &stack.runtime().store;
    let other = TenantId::parse("other").unwrap();
    store.ensure_tenant(&other, None).await.unwrap();
    store.add_api_key(&other, "other-key").await.unwrap();
    let as_other = |method: reqwest::Method, path: String| {
        stack
            .http
            .request(method, format!("{}{path}", stack.api))
            .bearer_auth("other-key")
            .send()
    };
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/schedules/{id}")),
        (reqwest::Method::POST, format!("/v1/schedules/{id}/pause")),
        (reqwest::Method::POST, format!("/v1/schedules/{id}/resume")),
        (reqwest::Method::DELETE, format!("/v1/schedules/{id}")),
    ] {
        let r = as_other(method, path.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "no such schedule");
    }
    let list: Value = as_other(reqwest::Method::GET, "/v1/schedules".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["schedules"], json!([]));
    let (s, mine) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!((s, &mine["enabled"]), (200, &json!(true)));
    stack.stop().await;
}
