//! The `offload` binary's output: a reader that goes away (`offload submit … | head`) ends
//! the command quietly instead of a panic, and `offload download` names the file by what
//! the result is.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use jobs_cli::Roles;
use mock_source::{MockSource, MockSourceOptions};
use serde_json::{Value, json};

use jobs_testkit::{KEY, Stack};

/// Runs `offload --api-url … --api-key … <args>` with its standard output the
/// write end of a pipe whose read end is already closed, off the async threads.
async fn offload_into_closed_pipe(stack: &Stack, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_offload"));
    cmd.args(["--api-url", &stack.api, "--api-key", KEY])
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Runs `offload --api-url … --api-key … <args>` in `dir`.
async fn offload_in(stack: &Stack, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_offload"));
    cmd.args(["--api-url", &stack.api, "--api-key", KEY])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_offload_quietly() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    for args in [
        &["submit", "export", "--dataset", "things"][..],
        &["schedule", "list"][..],
    ] {
        let out = offload_into_closed_pipe(&stack, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} is not quiet: {stderr}");
    }
    // The command did its work; only its output had nowhere to go.
    let (_, jobs) = stack.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_names_the_file_by_what_the_result_is() {
    let mock = MockSource::start(MockSourceOptions {
        records: 120,
        latency: Duration::from_millis(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let sources = format!(
        "[sources.crm]\nbase_url = \"{}\"\npage_size = 40\npartition_size = 50\n\
         retry_base_ms = 10\nretry_cap_secs = 2\n",
        mock.base_url()
    );
    let stack = Stack::start(Roles::ALL, &sources).await;
    let dir = stack.blob_root.join("downloads");
    std::fs::create_dir_all(&dir).unwrap();

    let (status, job) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "ingest", "ingest": {"source": "crm"}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let ingest = job["id"].as_str().unwrap().to_owned();
    let export = stack
        .submit(json!({"dataset": "things", "format": "ndjson"}))
        .await;
    for id in [&ingest, &export] {
        let job = stack.finished(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }

    // An ingest's result is its JSON manifest.
    let out = offload_in(&stack, &dir, &["download", &ingest]).await;
    assert!(out.status.success(), "{out:?}");
    let manifest = dir.join(format!("{ingest}.json"));
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}; {out:?}", manifest.display()));
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest["records"], 120, "{manifest}");
    assert!(!dir.join(format!("{ingest}.csv")).exists());

    // An NDJSON export's result is NDJSON.
    let out = offload_in(&stack, &dir, &["download", &export]).await;
    assert!(out.status.success(), "{out:?}");
    let rows = std::fs::read_to_string(dir.join(format!("{export}.ndjson"))).unwrap();
    assert_eq!(rows.lines().count(), 3000);
    let first: Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert!(first["id"].is_number(), "{first}");
    stack.stop().await;
}
