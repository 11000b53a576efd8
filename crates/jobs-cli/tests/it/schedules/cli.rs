//! `offload schedule …` against a running stack: the command line parsed as the binary
//! parses it and dispatched to `jobs_cli::schedule::run`, whose output is captured; and the
//! binary itself, for its exit status and the API's message on a refusal.

use std::process::Output;

use clap::Parser;
use jobs_cli::{Cli, Client, Command, Roles};
use serde_json::{Value, json};

use jobs_testkit::schedules::{create, export_job, schedule, utc};
use jobs_testkit::{KEY, Stack};

/// Runs `offload schedule <args>` in-process against the stack; returns what it printed.
async fn offload(stack: &Stack, args: &[&str]) -> anyhow::Result<String> {
    let argv = ["offload", "--api-url", &stack.api, "schedule"];
    let cli = Cli::try_parse_from(argv.iter().chain(args))?;
    let Command::Schedule(cmd) = cli.command else {
        panic!("`{args:?}` is not a schedule command");
    };
    let mut out = Vec::new();
    let api = Client::new(stack.api.clone(), KEY.to_owned());
    jobs_cli::schedule::run(&cmd, &api, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

async fn offload_json(stack: &Stack, args: &[&str]) -> Value {
    let out = offload(stack, args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

async fn offload_err(stack: &Stack, args: &[&str]) -> String {
    match offload(stack, args).await {
        Ok(out) => panic!("{args:?} succeeded: {out}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_commands_create_list_show_update_pause_resume_and_delete() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let job_file = stack.blob_root.join("job.json");
    std::fs::create_dir_all(&stack.blob_root).unwrap();
    std::fs::write(&job_file, export_job().to_string()).unwrap();

    let created = offload_json(
        &stack,
        &[
            "create",
            "--name",
            "approved expenses",
            "--cron",
            "0 6 1,15 * *",
            "--timezone",
            "Europe/Paris",
            "--job",
            job_file.to_str().unwrap(),
        ],
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["job"]["export"]["dataset"], "things");
    assert_eq!(created["timezone"], "Europe/Paris");
    let local = created["next_run_at_local"].as_str().unwrap();
    assert!(local.contains("T06:00:00+0"), "{local}");
    let (_, stored) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(stored["name"], "approved expenses");

    // Another, with the job inline and the default time zone; the list shows both.
    let other = create(&stack, &schedule("0 7 * * *")).await;
    let inline = offload_json(
        &stack,
        &[
            "create",
            "--name",
            "utc",
            "--cron",
            "0 5 * * *",
            "--job",
            &export_job().to_string(),
        ],
    )
    .await;
    assert_eq!(inline["timezone"], "UTC");
    let listed = offload(&stack, &["list"]).await.unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    assert!(lines[0].starts_with("ID"));
    // Newest first.
    for (line, doc) in lines[1..].iter().zip([&inline, &other, &created]) {
        assert!(line.starts_with(doc["id"].as_str().unwrap()), "{listed}");
        assert!(
            line.contains(doc["next_run_at_local"].as_str().unwrap()),
            "{line}"
        );
        assert!(line.ends_with(doc["name"].as_str().unwrap()), "{line}");
    }

    let shown = offload_json(&stack, &["show", &id]).await;
    assert_eq!(shown["id"], created["id"]);
    assert_eq!(shown["runs"], json!([]));

    let before = chrono::Utc::now();
    let updated = offload_json(
        &stack,
        &[
            "update",
            &id,
            "--cron",
            "30 18 * * *",
            "--timezone",
            "Asia/Tokyo",
            "--name",
            "evening",
        ],
    )
    .await;
    assert_eq!(
        (&updated["cron"], &updated["timezone"], &updated["name"]),
        (
            &json!("30 18 * * *"),
            &json!("Asia/Tokyo"),
            &json!("evening")
        )
    );
    assert!(utc(updated["next_run_at"].as_str().unwrap()) > before);
    assert!(
        updated["next_run_at_local"]
            .as_str()
            .unwrap()
            .ends_with("T18:30:00+09:00")
    );
    let rejobbed = offload_json(
        &stack,
        &[
            "update",
            &id,
            "--job",
            r#"{"kind": "export", "export": {"dataset": "things", "format": "ndjson"}}"#,
        ],
    )
    .await;
    assert_eq!(rejobbed["job"]["export"]["format"], "ndjson");
    assert_eq!(rejobbed["next_run_at"], updated["next_run_at"]);
    let (_, stored) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(
        (&stored["name"], &stored["job"]),
        (&json!("evening"), &rejobbed["job"])
    );

    let paused = offload_json(&stack, &["pause", &id]).await;
    assert_eq!(
        (&paused["enabled"], &paused["next_run_at"]),
        (&json!(false), &Value::Null)
    );
    let listed = offload(&stack, &["list"]).await.unwrap();
    let line = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(line.contains("paused"), "{line}");
    let resumed = offload_json(&stack, &["resume", &id]).await;
    assert_eq!(resumed["enabled"], true);
    assert!(utc(resumed["next_run_at"].as_str().unwrap()) > before);

    let deleted = offload(&stack, &["delete", &id]).await.unwrap();
    assert_eq!(deleted.trim(), format!("deleted schedule {id}"));
    assert_eq!(stack.get(&format!("/v1/schedules/{id}")).await.0, 404);
    let gone = offload_err(&stack, &["show", &id]).await;
    assert!(
        gone.contains("404") && gone.contains("no such schedule"),
        "{gone}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_commands_report_the_apis_refusals_and_bad_arguments() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = create(&stack, &schedule("0 6 * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad_job = r#"{"kind": "export", "export": {"dataset": "nope"}}"#;
    let err = offload_err(
        &stack,
        &[
            "create",
            "--name",
            "n",
            "--cron",
            "0 6 * * *",
            "--job",
            bad_job,
        ],
    )
    .await;
    assert!(
        err.contains("422") && err.contains("job.export.dataset"),
        "{err}"
    );
    let err = offload_err(&stack, &["update", &id, "--timezone", "Europe/Pariss"]).await;
    assert!(err.contains("422") && err.contains("timezone: "), "{err}");
    assert!(err.contains("is not an IANA time zone name"), "{err}");
    let err = offload_err(&stack, &["update", &id]).await;
    assert!(err.contains("nothing to change"), "{err}");
    let err = offload_err(&stack, &["pause", "not-an-id"]).await;
    assert!(err.contains("is not a schedule id"), "{err}");
    let err = offload_err(&stack, &["update", &id, "--job", "/no/such/file.json"]).await;
    assert!(err.contains("/no/such/file.json"), "{err}");
    let err = offload_err(&stack, &["update", &id, "--job", "{not json"]).await;
    assert!(err.contains("--job is not valid JSON"), "{err}");
    let err = offload_err(&stack, &["create", "--name", "n", "--job", "{}"]).await;
    assert!(
        err.contains("--cron"),
        "clap names the missing option: {err}"
    );
    // Nothing was changed by the refusals.
    let (_, stored) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(stored["timezone"], "Europe/Paris");
    assert_eq!(stored["job"]["export"]["dataset"], "things");
    stack.stop().await;
}

/// Runs the `offload` binary with `args` (after the API options), off the async threads.
async fn offload_binary(stack: &Stack, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_offload"));
    cmd.args(["--api-url", &stack.api, "--api-key", KEY, "schedule"])
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offload_binary_prints_schedules_and_exits_non_zero_with_the_apis_message() {
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let id = create(&stack, &schedule("0 6 * * *")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = offload_binary(&stack, &["show", &id]).await;
    assert!(out.status.success(), "{out:?}");
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["id"], id);

    let out = offload_binary(&stack, &["update", &id, "--cron", "0 0 30 2 *"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("cron: never matches"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let (_, stored) = stack.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(stored["cron"], "0 6 * * *");
    stack.stop().await;
}
