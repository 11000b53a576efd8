//! The API's contract: idempotency, tenant isolation, every 4xx path, signed links, SSE.

use futures::StreamExt;
use jobs_core::TenantId;
use jobs_testkit::Roles;
use serde_json::{Value, json};

use jobs_testkit::{KEY, Stack};

fn export(extra: Value) -> Value {
    let mut e = json!({"dataset": "things"});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    json!({"kind": "export", "export": e})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_or_conflict() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let send = |body: Value, key: &'static str| {
        let req = stack
            .http
            .post(format!("{}/v1/jobs", stack.api))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let loc = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), loc, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, loc1, first) = send(export(json!({"format": "csv"})), "k-1").await;
    assert_eq!(s1, 202);
    assert_eq!(
        loc1.unwrap(),
        format!("/v1/jobs/{}", first["id"].as_str().unwrap())
    );
    let (s2, _, again) = send(export(json!({"format": "csv"})), "k-1").await;
    assert_eq!((s2, &again["id"]), (200, &first["id"]));
    let (s3, _, conflict) = send(export(json!({"format": "ndjson"})), "k-1").await;
    assert_eq!(s3, 409);
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    let (_, list) = stack.get("/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_jobs() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = stack.submit(json!({"dataset": "things"})).await;
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
        (reqwest::Method::GET, format!("/v1/jobs/{id}")),
        (reqwest::Method::POST, format!("/v1/jobs/{id}/cancel")),
        (reqwest::Method::POST, format!("/v1/jobs/{id}/retry-failed")),
        (reqwest::Method::GET, format!("/v1/jobs/{id}/result")),
        (reqwest::Method::GET, format!("/v1/jobs/{id}/events")),
    ] {
        let r = as_other(method, path.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let list: Value = as_other(reqwest::Method::GET, "/v1/jobs".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"], json!([]));
    // And the owner still sees it, untouched.
    let (s, job) = stack.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!((s, job["status"].as_str()), (200, Some("queued")));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_is_named_and_creates_nothing() {
    let stack = Stack::start(Roles::API_ONLY, "[api]\nmax_body_bytes = 4096").await;
    let url = |p: &str| format!("{}{p}", stack.api);
    // Authentication.
    let r = stack.http.get(url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = stack
        .http
        .get(url("/v1/jobs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Bodies.
    let r = stack
        .http
        .post(url("/v1/jobs"))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = stack
        .http
        .post(url("/v1/jobs"))
        .bearer_auth(KEY)
        .body(vec![b' '; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2]), ""),
        (json!({"export": {"dataset": "things"}}), "kind"),
        (json!({"kind": "mine", "export": {}}), "kind"),
        (json!({"kind": "export"}), "export"),
        (
            json!({"kind": "export", "export": {"dataset": "things"}, "extra": 1}),
            "extra",
        ),
        (export(json!({"dataset": "nope"})), "export.dataset"),
        (export(json!({"dataset": "expenses"})), "export.dataset"), // configured, table missing
        (export(json!({"format": "xlsx"})), "export.format"),
        (
            export(json!({"columns": ["id", "secret"]})),
            "export.columns[1]",
        ),
        (
            export(json!({"filter": {"note": "x"}})),
            "export.filter.note",
        ),
        (
            export(json!({"filter": {"amount": {"gte": "lots"}}})),
            "export.filter.amount.gte",
        ),
        (
            export(json!({"filter": {"happened_at": {"lt": "yesterday-ish"}}})),
            "export.filter.happened_at.lt",
        ),
        (
            export(json!({"filter": {"label": {"in": "alpha"}}})),
            "export.filter.label.in",
        ),
        (export(json!({"chunk_rows": 1})), "export.chunk_rows"),
        (
            json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": "ftp://x"}}),
            "notify.webhook_url",
        ),
        (
            json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": "not a url"}}),
            "notify.webhook_url",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = stack.post("/v1/jobs", &body).await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["error"]["code"], "invalid", "{err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = stack
        .http
        .post(url("/v1/jobs"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "")
        .json(&export(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // Queries and ids.
    for (path, status) in [
        ("/v1/jobs?status=sleeping", 422),
        ("/v1/jobs?limit=0", 422),
        ("/v1/jobs?cursor=garbage", 422),
        ("/v1/jobs/not-a-uuid", 404),
        ("/v1/jobs/0193a5c4-7f1e-7cc2-9d4b-5b8e2f1a0000", 404),
        ("/v1/nothing-here", 404),
    ] {
        let (s, body) = stack.get(path).await;
        assert_eq!(s, status, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let count: i64 = jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload.jobs")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "a refused request created a job");

    // A job that is not finished has no result and cannot be downloaded.
    let id = stack.submit(json!({"dataset": "things"})).await;
    let (s, body) = stack.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("not_ready"))
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_are_signed_and_expire() {
    let stack = Stack::start(Roles::ALL, "").await;
    let id = stack.submit(json!({"dataset": "things"})).await;
    stack.finished(&id).await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{}/v1/jobs/{id}/result", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let link = r.headers()["location"].to_str().unwrap().to_owned();
    // The link works without an API key.
    let ok = no_redirect.get(&link).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(
        ok.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("{id}.csv"))
    );
    // Tampered links and expired ones do not.
    let signer = jobs_api::LinkSigner::new("0123456789abcdef0123456789abcdef");
    let past = chrono::Utc::now().timestamp() - 1;
    let expired = format!(
        "{}/v1/downloads/{id}?expires={past}&signature={}",
        stack.api,
        signer.sign(&id, past)
    );
    let tampered = link.replace("expires=", "expires=9");
    for bad in [
        expired,
        tampered,
        format!("{}/v1/downloads/{id}", stack.api),
    ] {
        let r = no_redirect.get(&bad).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{bad}");
    }
    // Once the file is gone, a valid link says so without the blob store's own error
    // (which names the storage path) reaching whoever holds the link.
    let rt = stack.runtime();
    let job = rt.store.get_any(id.parse().unwrap()).await.unwrap();
    let path = job.result.unwrap()["path"].as_str().unwrap().to_owned();
    rt.blobs.delete(&path).await.unwrap();
    let gone = no_redirect.get(&link).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 410);
    let body: Value = gone.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, "the file is gone: it was deleted or has expired");
    assert!(!message.contains(&path) && !message.contains(stack.blob_root.to_str().unwrap()));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_as_server_sent_events() {
    let stack = Stack::start(
        Roles {
            enqueuer: true,
            ..Roles::API_ONLY
        },
        "",
    )
    .await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 500}))
        .await;
    let resp = stack
        .http
        .get(format!("{}/v1/jobs/{id}/events", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    // Start the worker only now, so every change happens while we listen.
    let worker = stack.start_worker();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(60), stream.next())
        .await
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if text.contains("\"status\":\"succeeded\"") && text.ends_with("\n\n") {
            break;
        }
    }
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"job"), "{text}");
    assert_eq!(events.last(), Some(&"job"), "{text}");
    assert!(
        events.iter().filter(|e| **e == "progress").count() >= 5,
        "{text}"
    );
    worker.cancel();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_into_the_private_network_are_refused() {
    let stack = Stack::start(
        Roles::API_ONLY,
        "[notifier]\nallow_private_networks = false",
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://10.0.0.8/",
    ] {
        let body = json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": url}});
        let (status, err) = stack.post("/v1/jobs", &body).await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (422, Some("notify.webhook_url")),
            "{url}: {err}"
        );
    }
    stack.stop().await;
}
