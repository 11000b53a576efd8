//! What an import refuses at submit, with the field at fault, and the upload route's limits
//! and tenant isolation.

use jobs_core::TenantId;
use serde_json::{Value, json};

use crate::import::{stack, upload, upload_as};
use jobs_testkit::{KEY, Stack};

async fn submit(stack: &Stack, params: Value) -> (u16, Value) {
    stack
        .post("/v1/jobs", &json!({"kind": "import", "import": params}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_naming_the_field() {
    let stack = stack(
        1024,
        "[api]\nmax_upload_bytes = 3000000\n\
         [datasets.things_view]\ntable = \"public.things_view\"\nkey = \"id\"\ncolumns = [\"id\", \"label\"]\n\
         [datasets.strict]\ntable = \"public.strict\"\nkey = \"id\"\ncolumns = [\"id\", \"name\", \"note\"]\n\
         [datasets.keyless]\ntable = \"public.keyless\"\nkey = \"id\"\ncolumns = [\"id\", \"note\"]\n",
    )
    .await;
    for sql in [
        "CREATE VIEW public.things_view AS SELECT * FROM public.things",
        "CREATE TABLE public.strict (id bigint PRIMARY KEY, name text NOT NULL, note text)",
        "CREATE TABLE public.keyless (id bigint, note text)",
    ] {
        jobs_core::sqlx::query(sql)
            .execute(&stack.db.pool)
            .await
            .unwrap();
    }
    let good = upload(&stack, b"id,label\n1,a\n".to_vec()).await;
    let no_name = upload(&stack, b"id,note\n1,x\n".to_vec()).await;
    let unknown_col = upload(&stack, b"id,salary\n1,3\n".to_vec()).await;
    let no_key = upload(&stack, b"label\nx\n".to_vec()).await;

    // Another tenant's upload is as unknown as one that never existed.
    let store = &stack.runtime().store;
    let other = TenantId::parse("other").unwrap();
    store.ensure_tenant(&other, None).await.unwrap();
    store.add_api_key(&other, "other-key").await.unwrap();
    let (status, theirs) = upload_as(&stack, "other-key", b"id,label\n1,a\n".to_vec()).await;
    assert_eq!(status, 201);
    let theirs = theirs["upload_id"].as_str().unwrap().to_owned();
    let (status, _) = stack.get(&format!("/v1/uploads/{theirs}")).await;
    assert_eq!(status, 404, "another tenant's upload is visible");
    let (status, mine) = stack.get(&format!("/v1/uploads/{good}")).await;
    assert_eq!((status, mine["bytes"].as_u64()), (200, Some(13)));

    let cases = [
        (
            json!({"dataset": "nope", "upload_id": good}),
            "import.dataset",
            "unknown dataset",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": uuid::Uuid::now_v7()}),
            "import.upload_id",
            "no upload",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": theirs}),
            "import.upload_id",
            "no upload",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": "not-an-id"}),
            "import.upload_id",
            "not an upload id",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": good, "format": "xlsx"}),
            "import.format",
            "csv",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": good, "max_rejected": "all"}),
            "import.max_rejected",
            "integer",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": unknown_col}),
            "import.upload_id",
            "`salary` is not a column",
        ),
        (
            json!({"dataset": "things_copy", "upload_id": no_key}),
            "import.upload_id",
            "key column `id` is missing",
        ),
        (
            json!({"dataset": "strict", "upload_id": no_name}),
            "import.upload_id",
            "name are NOT NULL",
        ),
        (
            json!({"dataset": "things_view", "upload_id": good}),
            "import.dataset",
            "not a table",
        ),
        (
            json!({"dataset": "keyless", "upload_id": no_name}),
            "import.dataset",
            "no unique index",
        ),
        (
            json!({"dataset": "things_copy"}),
            "import.upload_id",
            "required",
        ),
    ];
    for (params, field, says) in cases {
        let (status, body) = submit(&stack, params.clone()).await;
        assert_eq!(status, 422, "{params}: {body}");
        assert_eq!(body["error"]["field"], field, "{params}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{params}: {message}");
    }
    let (status, jobs) = stack.get("/v1/jobs").await;
    assert_eq!((status, jobs["jobs"].as_array().unwrap().len()), (200, 0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_their_own_size_limit() {
    let stack = stack(1024, "[api]\nmax_upload_bytes = 3000000\n").await;
    // Over the JSON body limit (1 MiB), under the upload limit: accepted, whole.
    let big: Vec<u8> = (0..2_500_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (status, body) = upload_as(&stack, KEY, big.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["bytes"], 2_500_000);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(body["sha256"], sha);

    let (status, body) = upload_as(&stack, KEY, vec![b'x'; 3_000_001]).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.max_upload_bytes")
    );
    // Streamed without a length: cut off once over the limit, and nothing is recorded.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'y'; 1_000_000])).collect();
    let resp = stack
        .http
        .post(format!("{}/v1/uploads", stack.api))
        .bearer_auth(KEY)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let (status, _) = upload_as(&stack, KEY, Vec::new()).await;
    assert_eq!(status, 400, "an empty upload");
    let recorded: i64 = jobs_core::sqlx::query_scalar("SELECT count(*) FROM offload.uploads")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    let resp = stack
        .http
        .post(format!("{}/v1/uploads", stack.api))
        .body("id\n1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Local files cannot hand out upload URLs.
    let (status, body) = stack.post("/v1/uploads/direct", &json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("direct_upload_unavailable"))
    );
    stack.stop().await;
}
