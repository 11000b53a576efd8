//! Webhooks never go through a proxy named by `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY`:
//! the notifier checks the receiver's addresses and pins them, and a proxy would connect to
//! the host itself, past the check. Run for real: `offload up` as a child process with the
//! proxy variables set to a listener that counts connections.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobs_testkit::webhook::Receiver;
use jobs_testkit::{Roles, Stack, stack_toml};
use serde_json::json;

/// A TCP listener on loopback that counts the connections made to it and closes them.
async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_ignore_proxy_variables() {
    // The in-process stack only takes the submission; the child does the rest.
    let stack = Stack::start(Roles::API_ONLY, "").await;
    let (proxy, proxied) = counting_proxy().await;
    let receiver = Receiver::start(Vec::new()).await;
    let dir = stack.blob_root.with_extension("proxy-test");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("offload.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[api]\nlisten = \"127.0.0.1:0\"\n",
            stack_toml(&stack.blob_root)
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_offload"))
        .args(["--config", config.to_str().unwrap(), "up"])
        .env("OFFLOAD__DATABASE__URL", &stack.db.url)
        .env("OFFLOAD__TELEMETRY__LOG_FILTER", "warn")
        .env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env("ALL_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("https_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = KillOnDrop(child);

    let (status, job) = stack
        .post(
            "/v1/jobs",
            &json!({"kind": "export", "export": {"dataset": "things"}, "notify": {"webhook_url": receiver.url}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let calls = receiver.wait_for_calls(1, Duration::from_secs(90)).await;
    let payload: serde_json::Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(payload["data"]["id"], job["id"]);
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "the webhook went to the proxy"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    stack.stop().await;
}
