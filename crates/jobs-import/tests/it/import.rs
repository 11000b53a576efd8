//! Imports through the whole pipeline: export → upload → import round trips (CSV and
//! NDJSON) compared with Postgres's own COPY, CSV quoting across range boundaries,
//! redelivery, rejects with line numbers, dry runs and `max_rejected`. The 4xx paths are in
//! `import_errors`.

use jobs_import::csv::Records;
use jobs_import::load::{ItemOutput, LoadItem, load_range};
use jobs_import::{ByteRange, ImportSpec, target, upload_path};
use jobs_testkit::Roles;
use serde_json::{Value, json};

use jobs_testkit::{KEY, Stack, THINGS_COLUMNS};

/// The test stack plus `things_copy`, an empty table like `things`, as a dataset; ranges of
/// `chunk_bytes`.
pub async fn stack(chunk_bytes: u64, extra: &str) -> Stack {
    let toml = format!(
        "[import]\nchunk_bytes = {chunk_bytes}\n{extra}\n[datasets.things_copy]\n\
         table = \"public.things_copy\"\nkey = \"id\"\n\
         columns = [\"id\", \"label\", \"note\", \"amount\", \"happened_at\", \"flag\"]\n"
    );
    let stack = Stack::start(Roles::ALL, &toml).await;
    jobs_core::sqlx::query("CREATE TABLE public.things_copy (LIKE public.things INCLUDING ALL)")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    stack
}

pub use jobs_testkit::{upload, upload_as};

/// Submits an import and waits for it to finish; returns the job.
async fn import(stack: &Stack, params: Value) -> Value {
    let (status, job) = stack
        .post("/v1/jobs", &json!({"kind": "import", "import": params}))
        .await;
    assert_eq!(status, 202, "{job}");
    stack.finished(job["id"].as_str().unwrap()).await
}

async fn export_file(stack: &Stack, format: &str) -> Vec<u8> {
    let id = stack
        .submit(json!({"dataset": "things", "format": format}))
        .await;
    assert_eq!(stack.finished(&id).await["status"], "succeeded");
    stack.download(&id).await
}

/// Rows of `things` not in `things_copy` plus the reverse (NULLs compare equal in EXCEPT).
async fn differences(stack: &Stack) -> i64 {
    jobs_core::sqlx::query_scalar(&format!(
        "SELECT (SELECT count(*) FROM (SELECT {THINGS_COLUMNS} FROM public.things
                 EXCEPT SELECT {THINGS_COLUMNS} FROM public.things_copy) a)
              + (SELECT count(*) FROM (SELECT {THINGS_COLUMNS} FROM public.things_copy
                 EXCEPT SELECT {THINGS_COLUMNS} FROM public.things) b)"
    ))
    .fetch_one(&stack.db.pool)
    .await
    .unwrap()
}

fn counts(job: &Value) -> (u64, u64, u64, u64, u64) {
    let r = &job["result"];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {job}"));
    (
        n("rows"),
        n("inserted"),
        n("updated"),
        n("unchanged"),
        n("rejected"),
    )
}

/// A job's rejects report, through its signed link: (line, column, value, reason) rows.
pub async fn report(stack: &Stack, id: &str) -> Vec<(u64, String, Option<String>, String)> {
    let resp = stack
        .http
        .get(format!("{}/v1/jobs/{id}/rejects", stack.api))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the report could not be downloaded"
    );
    let bytes = resp.bytes().await.unwrap();
    let mut records = Records::new(&bytes, 1);
    let header = records.next().unwrap();
    assert_eq!(header.raw, b"line,column,value,reason");
    records
        .map(|r| {
            let f = r.fields.unwrap();
            let text = |i: usize| {
                f[i].as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap())
            };
            (
                text(0).unwrap().parse().unwrap(),
                text(1).unwrap_or_default(),
                text(2),
                text(3).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_export_imports_back_unchanged_and_a_second_import_changes_nothing() {
    let stack = stack(4096, "").await;
    let file = export_file(&stack, "csv").await;
    let upload_id = upload(&stack, file.clone()).await;
    let params = json!({"dataset": "things_copy", "upload_id": upload_id, "format": "csv"});
    let job = import(&stack, params.clone()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["progress"]["total"].as_u64().unwrap() > 20, "{job}");
    assert_eq!(counts(&job), (3000, 3000, 0, 0, 0));
    assert!(job["result"].get("rejects_url").is_none(), "{job}");
    assert_eq!(differences(&stack).await, 0);
    // Re-exported by Postgres itself, the copy is the file byte for byte.
    let again = stack
        .copy_out(
            &format!("SELECT {THINGS_COLUMNS} FROM public.things_copy ORDER BY id"),
            "FORMAT csv, HEADER",
        )
        .await;
    assert!(
        again == file,
        "the re-export differs from the imported file"
    );

    // The same upload again: every row is already there as the file has it.
    let ctids = |pool| async move {
        jobs_core::sqlx::query_scalar::<_, String>(
            "SELECT string_agg(ctid::text, ',' ORDER BY id) FROM public.things_copy",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let before = ctids(&stack.db.pool).await;
    let second = import(&stack, params).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(counts(&second), (3000, 0, 0, 3000, 0));
    assert_eq!(ctids(&stack.db.pool).await, before, "rows were rewritten");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_export_imports_back_unchanged() {
    let stack = stack(2048, "").await;
    let file = export_file(&stack, "ndjson").await;
    let upload_id = upload(&stack, file.clone()).await;
    let job = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id, "format": "ndjson"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(counts(&job), (3000, 3000, 0, 0, 0));
    assert_eq!(differences(&stack).await, 0);
    let again = stack
        .copy_out(
            &format!("SELECT row_to_json(t)::text FROM (SELECT {THINGS_COLUMNS} FROM public.things_copy ORDER BY id) t"),
            "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'",
        )
        .await;
    assert!(again == file, "the NDJSON re-export differs");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quoting_survives_a_range_per_record() {
    // chunk_bytes = 1: every record is a range of its own, so every boundary is tested.
    let stack = stack(1, "").await;
    let file = "\u{feff}id,label,note,amount,happened_at,flag\r\n\
        1,\"multi\nline \"\"quoted\"\", with comma\",plain,1.5,2026-01-01 00:00:00+00,t\r\n\
        2,,\"\",,,\r\n\
        3,東京,\"🚀 \"\"x\"\"\",0,,f\r\n\
        \r\n\
        4,\"a\"\"b\",\\.,-1,,\r\n\
        5,\"trailing\r\n\",x,2,2026-06-30T23:59:59.5+02:00,true";
    let upload_id = upload(&stack, file.as_bytes().to_vec()).await;
    let job = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["progress"]["total"], 6,
        "one item per record (and the blank line)"
    );
    assert_eq!(counts(&job), (5, 5, 0, 0, 0));
    type Row = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<bool>,
    );
    let rows: Vec<Row> = jobs_core::sqlx::query_as(
        "SELECT id, label, note, amount::text, to_char(happened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), flag
         FROM public.things_copy ORDER BY id",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            (
                1,
                s("multi\nline \"quoted\", with comma"),
                s("plain"),
                s("1.5000"),
                s("2026-01-01 00:00:00.000"),
                Some(true)
            ),
            (2, None, s(""), None, None, None),
            (3, s("東京"), s("🚀 \"x\""), s("0.0000"), None, Some(false)),
            (4, s("a\"b"), s("\\."), s("-1.0000"), None, None),
            (
                5,
                s("trailing\r\n"),
                s("x"),
                s("2.0000"),
                s("2026-06-30 21:59:59.500"),
                Some(true)
            ),
        ]
    );
    stack.stop().await;
}

/// A file with one good row and one bad row of each kind, on known lines.
pub const BAD_FILE: &str = "id,label,note,amount,happened_at,flag
1,a,ok,1,,t
2,a,\"two
lines\",not-a-number,,t
3,a,x,1,yesterday-ish,t
4,a,x
1,b,dup,2,,f
,a,nokey,1,,t
5,a,x,1,,maybe
6,a,x,99999999999.1,,t
7,a,\"fine\",2,,t
";

/// Key 1 twice, in parts of the file that different work items load.
const REPEATED_ACROSS_PARTS: &str = "id,label,note,amount,happened_at,flag
1,first,x,1,,t
2,b,x,2,,f
3,c,x,3,,t
1,second,y,9,,f
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_repeated_in_another_part_of_the_file_is_rejected_not_overwritten() {
    // chunk_bytes = 1: every record is a work item of its own, run concurrently.
    let stack = stack(1, "").await;
    // A row already in the table is not a repeat: the file's row updates it.
    jobs_core::sqlx::query("INSERT INTO public.things_copy (id, label) VALUES (3, 'old')")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let upload_id = upload(&stack, REPEATED_ACROSS_PARTS.as_bytes().to_vec()).await;
    let job = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id, "max_rejected": 1}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(counts(&job), (4, 2, 1, 0, 1), "{job}");
    let report = report(&stack, job["id"].as_str().unwrap()).await;
    assert_eq!(report.len(), 1, "{report:?}");
    let (line, column, value, reason) = &report[0];
    assert!(*line == 2 || *line == 5, "{report:?}");
    assert_eq!((column.as_str(), value.as_deref()), ("id", Some("1")));
    assert!(reason.contains("another line of this file"), "{reason}");
    // The row is the other line's, whole: whichever part committed first.
    let label: String =
        jobs_core::sqlx::query_scalar("SELECT label FROM public.things_copy WHERE id = 1")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(label, if *line == 2 { "second" } else { "first" });
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejected_row_is_reported_with_its_line_and_the_rest_load() {
    let stack = stack(1 << 20, "").await;
    let upload_id = upload(&stack, BAD_FILE.as_bytes().to_vec()).await;
    let job = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id, "max_rejected": 100}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(counts(&job), (9, 2, 0, 0, 7));
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        job["result"]["rejects_url"],
        format!("{}/v1/jobs/{id}/rejects", stack.api)
    );
    let report = report(&stack, id).await;
    let got: Vec<(u64, &str, Option<&str>)> = report
        .iter()
        .map(|(l, c, v, _)| (*l, c.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "amount", Some("not-a-number")),
            (5, "happened_at", Some("yesterday-ish")),
            (6, "", Some("4,a,x")),
            (7, "id", Some("1")),
            (8, "id", None),
            (9, "flag", Some("maybe")),
            (10, "amount", Some("99999999999.1")),
        ]
    );
    let reasons: Vec<&str> = report.iter().map(|r| r.3.as_str()).collect();
    for (reason, expect) in reasons.iter().zip([
        "invalid input syntax for type numeric",
        "invalid input syntax for type timestamp with time zone",
        "expected 6 fields, as in the header, found 3",
        "the key repeats line 2's",
        "the key is empty",
        "invalid input syntax for type boolean",
        "numeric field overflow",
    ]) {
        assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
    }
    let ids: Vec<i64> =
        jobs_core::sqlx::query_scalar("SELECT id FROM public.things_copy ORDER BY id")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(ids, [1, 7]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rejects_fail_the_job_and_a_dry_run_loads_nothing() {
    let stack = stack(64, "").await;
    let upload_id = upload(&stack, BAD_FILE.as_bytes().to_vec()).await;
    let dry = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id, "dry_run": true, "max_rejected": 7}),
    )
    .await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(dry["result"]["dry_run"], true);
    // Small ranges: the repeated key of line 7 is in another range than line 2's, so it is
    // an update rather than a reject.
    let (rows, inserted, updated, _, rejected) = counts(&dry);
    assert_eq!((rows, inserted + updated, rejected), (9, 3, 6), "{dry}");
    let count = || async {
        jobs_core::sqlx::query_scalar::<_, i64>("SELECT count(*) FROM public.things_copy")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 0, "a dry run loaded rows");
    assert_eq!(report(&stack, dry["id"].as_str().unwrap()).await.len(), 6);

    let failed = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id, "max_rejected": 5}),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // For real, the parts commit: key 1's second line is rejected as loaded by another
    // part, whichever of the two parts committed first (a dry run's parts never commit).
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("7 rows were rejected, more than max_rejected (5)"),
        "{error}"
    );
    assert_eq!(failed["result"]["rejected"], 7);
    // The report stays reachable, and rows that passed are loaded.
    let rejects = report(&stack, failed["id"].as_str().unwrap()).await;
    assert_eq!(rejects.len(), 7);
    assert!(
        rejects
            .iter()
            .any(|r| r.3.contains("loaded from another line of this file")),
        "{rejects:?}"
    );
    assert_eq!(count().await, 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_item_changes_nothing() {
    let stack = stack(1 << 20, "").await;
    let file = export_file(&stack, "csv").await;
    let upload_id = upload(&stack, file).await;
    let job = import(
        &stack,
        json!({"dataset": "things_copy", "upload_id": upload_id}),
    )
    .await;
    assert_eq!(counts(&job), (3000, 3000, 0, 0, 0));
    let job_id: jobs_core::JobId = job["id"].as_str().unwrap().parse().unwrap();
    let rt = stack.runtime();
    let stored = rt.store.get_any(job_id).await.unwrap();
    let spec: ImportSpec = serde_json::from_value(stored.params["import"].clone()).unwrap();
    let items = rt.store.items(job_id).await.unwrap();
    assert_eq!(items.len(), 1);
    let range: ByteRange = serde_json::from_value(items[0].item.payload.clone()).unwrap();
    let ds = rt.catalog.get("things_copy").await.unwrap();
    let table = target::inspect(&rt.pool, &ds).await.unwrap();
    let path = upload_path(&stored.tenant_id, spec.upload_id);
    let item = |seq| LoadItem {
        pool: &rt.pool,
        blobs: &rt.blobs,
        ds: &ds,
        table: &table,
        spec: &spec,
        upload_path: &path,
        job_id,
        seq,
    };
    // The same item delivered again: its commit is found, its counts stand.
    let recorded: ItemOutput = serde_json::from_value(items[0].output.clone().unwrap()).unwrap();
    assert_eq!(load_range(&item(0), &range).await.unwrap(), recorded);
    // The same range loaded for real by another item of the job (as if the file held it
    // twice, with the same values): every row is as the file has it, so nothing is
    // written and nothing rejected.
    let again = load_range(&item(999), &range).await.unwrap();
    assert_eq!(
        (again.rows, again.inserted, again.updated, again.unchanged),
        (3000, 0, 0, 3000)
    );
    assert_eq!(differences(&stack).await, 0);
    stack.stop().await;
}
