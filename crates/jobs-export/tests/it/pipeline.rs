//! Exports through the whole pipeline, compared byte for byte with what Postgres's own
//! COPY prints for the same query.

use jobs_testkit::Roles;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use jobs_testkit::{Stack, THINGS_COLUMNS, assert_export_equals_copy};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_is_byte_identical_to_copy_across_many_parts() {
    let stack = Stack::start(Roles::ALL, "").await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 100}))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["progress"]["total"], 31,
        "3000 rows in parts of 100 (+ the open-ended last)"
    );
    let file = stack.download(&id).await;
    let expected = stack
        .copy_out(
            &format!("SELECT {THINGS_COLUMNS} FROM public.things ORDER BY id"),
            "FORMAT csv, HEADER",
        )
        .await;
    assert!(
        file == expected,
        "the export differs from COPY ({} vs {} bytes)",
        file.len(),
        expected.len()
    );
    assert_eq!(job["result"]["rows"], 3000);
    assert_eq!(job["result"]["bytes"], file.len());
    assert_eq!(job["result"]["sha256"], hex(&Sha256::digest(&file)));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_from_a_page_sample_still_covers_every_row_once() {
    // Any table over 100 rows is planned from a sample here.
    let stack = Stack::start(Roles::ALL, "[export]\nexact_plan_max_rows = 100").await;
    let id = stack
        .submit(json!({"dataset": "things", "chunk_rows": 300}))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let parts = job["progress"]["total"].as_u64().unwrap();
    assert!(
        (6..=16).contains(&parts),
        "3000 rows in parts of ~300 made {parts} parts"
    );
    assert_export_equals_copy(
        &stack,
        &id,
        &format!("SELECT {THINGS_COLUMNS} FROM public.things ORDER BY id"),
        "FORMAT csv, HEADER",
    )
    .await;
    // The sampled boundaries keep parts near the requested size.
    let items = stack
        .runtime()
        .store
        .items(id.parse().unwrap())
        .await
        .unwrap();
    let rows: Vec<u64> = items
        .iter()
        .map(|i| i.output.as_ref().unwrap()["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows.iter().sum::<u64>(), 3000);
    assert!(
        rows.iter().all(|r| *r <= 900),
        "an unbalanced part: {rows:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_column_choice_match_the_same_sql() {
    let stack = Stack::start(Roles::ALL, "").await;
    let id = stack
        .submit(json!({
            "dataset": "things",
            "columns": ["note", "id", "amount"],
            "filter": {"label": {"in": ["alpha", "δέλτα"]}, "amount": {"gte": 0, "lt": "2000.5"},
                       "flag": true},
            "chunk_rows": 25
        }))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["result"]["rows"].as_u64().unwrap() > 10,
        "the filter should select something: {job}"
    );
    assert_export_equals_copy(
        &stack,
        &id,
        "SELECT note, id, amount FROM public.things
         WHERE label IN ('alpha', 'δέλτα') AND amount >= 0 AND amount < 2000.5 AND flag
         ORDER BY id",
        "FORMAT csv, HEADER",
    )
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_has_one_document_per_row_in_key_order() {
    let stack = Stack::start(Roles::ALL, "").await;
    let id = stack
        .submit(json!({"dataset": "things", "format": "ndjson", "filter": {"label": "beta"}, "chunk_rows": 50}))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let file = stack.download(&id).await;
    let expected = stack
        .copy_out(
            &format!("SELECT row_to_json(t)::text FROM (SELECT {THINGS_COLUMNS} FROM public.things WHERE label = 'beta' ORDER BY id) t"),
            "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'",
        )
        .await;
    assert!(file == expected);
    let docs: Vec<Value> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(docs.len() as u64, job["result"]["rows"].as_u64().unwrap());
    assert!(
        docs.iter().any(|d| d["note"] == "new\nline"),
        "escapes survive"
    );
    assert!(
        docs.windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64())
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_selection_is_a_header_only_file() {
    let stack = Stack::start(Roles::ALL, "").await;
    let id = stack
        .submit(json!({"dataset": "things", "filter": {"label": "nothing-like-this"}}))
        .await;
    let job = stack.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["rows"], 0);
    assert_eq!(
        stack.download(&id).await,
        format!("{}\n", THINGS_COLUMNS.replace(", ", ",")).into_bytes()
    );
    stack.stop().await;
}

/// `neutralize_formulas`: text cells a spreadsheet would run (`=`, `+`, `-`, `@`, tab, CR
/// first) get a leading `'`; numbers (negative ones too) and every other cell are as COPY
/// prints them. Without the option the same cells come out as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formulas_are_neutralised_on_request_and_only_then() {
    let stack = Stack::start(Roles::ALL, "").await;
    let cells = [
        (1, "=1+1"),
        (2, "+cmd|' /C calc'!A0"),
        (3, "-2"),
        (4, "@SUM(A1:A9)"),
        (5, "\ttabbed"),
        (6, "\rreturn"),
        (7, "plain = not first"),
    ];
    for (id, note) in cells {
        jobs_core::sqlx::query("UPDATE public.things SET note = $2 WHERE id = $1")
            .bind(id as i64)
            .bind(note)
            .execute(&stack.db.pool)
            .await
            .unwrap();
    }
    let query = "SELECT id, note, amount FROM public.things ORDER BY id";
    let plain = stack.copy_out(query, "FORMAT csv, HEADER").await;
    let plain = String::from_utf8(plain).unwrap();
    assert!(plain.contains("\n1,=1+1,"), "{}", &plain[..200]);
    // What a neutralised file must be: the same, with a ' before each formula cell.
    let mut expected = plain.clone();
    for (from, to) in [
        ("\n1,=1+1,", "\n1,'=1+1,"),
        ("\n2,+cmd|' /C calc'!A0,", "\n2,'+cmd|' /C calc'!A0,"),
        ("\n3,-2,", "\n3,'-2,"),
        ("\n4,@SUM(A1:A9),", "\n4,'@SUM(A1:A9),"),
        ("\n5,\ttabbed,", "\n5,'\ttabbed,"),
        ("\n6,\"\rreturn\",", "\n6,\"'\rreturn\","),
    ] {
        assert!(expected.contains(from), "{from:?}");
        expected = expected.replacen(from, to, 1);
    }
    let export = |neutralize: Option<bool>| {
        let mut req =
            json!({"dataset": "things", "columns": ["id", "note", "amount"], "chunk_rows": 500});
        if let Some(n) = neutralize {
            req["neutralize_formulas"] = json!(n);
        }
        let stack = &stack;
        async move {
            let id = stack.submit(req).await;
            let job = stack.finished(&id).await;
            assert_eq!(job["status"], "succeeded", "{job}");
            String::from_utf8(stack.download(&id).await).unwrap()
        }
    };
    let neutralised = export(Some(true)).await;
    assert!(neutralised == expected, "the neutralised file differs");
    // The amounts include negative numbers, and they are as COPY prints them (the files
    // differ only in the six cells above).
    assert!(
        plain
            .lines()
            .any(|l| l.rsplit(',').next().is_some_and(|a| a.starts_with('-'))),
        "the table has negative amounts"
    );
    assert!(export(None).await == plain, "the default is COPY's bytes");
    assert!(export(Some(false)).await == plain);
    // NDJSON is not opened as a spreadsheet: the option is refused there.
    let (status, body) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "export", "export": {"dataset": "things", "format": "ndjson", "neutralize_formulas": true}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "export.neutralize_formulas");
    stack.stop().await;
}
