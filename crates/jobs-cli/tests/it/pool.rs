//! `database.max_connections` is what one process holds, all told: the job store's pool,
//! the queue receivers' share and the LISTEN connections. Checked from Postgres's side
//! (`pg_stat_activity`) while a job runs through every service of one process, and at the
//! smallest setting the API still becomes ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use jobs_cli::Roles;
use serde_json::json;

use jobs_testkit::Stack;

/// The most connections the services of this test's database held at once, sampled every
/// 10 ms until `done`.
fn sample_connections(
    pool: jobs_core::sqlx::PgPool,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(i64, u64)> {
    let most = AtomicI64::new(0);
    tokio::spawn(async move {
        let mut samples = 0;
        let mut every = tokio::time::interval(std::time::Duration::from_millis(10));
        while !done.load(Ordering::Relaxed) {
            every.tick().await;
            let n: i64 = jobs_core::sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'offload'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            most.fetch_max(n, Ordering::Relaxed);
            samples += 1;
        }
        (most.load(Ordering::Relaxed), samples)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_holds_no_more_connections_than_it_is_given() {
    for max in [4, 8] {
        let stack = Stack::start(
            Roles::ALL,
            // At 4 connections, one worker loop (more are refused: see
            // `Config::least_connections_for_workers`).
            &format!(
                "[database]\nmax_connections = {max}\n[worker]\nconcurrency = {}\n",
                if max < 8 { 1 } else { 4 }
            ),
        )
        .await;
        let (status, ready) = stack.get("/health/ready").await;
        assert_eq!(status, 200, "max_connections = {max}: {ready}");
        let done = Arc::new(AtomicBool::new(false));
        let sampler = sample_connections(stack.db.pool.clone(), done.clone());
        let id = stack
            .submit(json!({"dataset": "things", "format": "csv", "chunk_rows": 100}))
            .await;
        let job = stack.finished(&id).await;
        done.store(true, Ordering::Relaxed);
        let (most, samples) = sampler.await.unwrap();
        assert_eq!(job["status"], "succeeded", "max_connections = {max}: {job}");
        assert!(samples > 0);
        assert!(
            most <= max,
            "max_connections = {max}, but the process held {most} connections"
        );
        eprintln!("max_connections = {max}: at most {most} held over {samples} samples");
        stack.stop().await;
    }
}
