//! Slow and greedy clients: a client that never finishes its headers is disconnected
//! after `api.header_read_timeout_secs`, and connections beyond `api.max_connections` are
//! closed on accept while the API keeps serving the ones it holds.

use std::time::Duration;

use jobs_testkit::{Roles, Stack, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(stack: &Stack) -> String {
    stack.api.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok().map(|()| got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let stack = Stack::start(Roles::API_ONLY, "[api]\nheader_read_timeout_secs = 1").await;
    let mut conn = TcpStream::connect(addr(&stack)).await.unwrap();
    // A request line and one header, then nothing: the end of the headers never comes.
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut conn, Duration::from_secs(15)).await;
    assert!(
        answer.is_some(),
        "the connection was still open 15 s after a 1 s header timeout"
    );
    // The API still serves everyone else.
    let (status, _) = stack.get("/health/live").await;
    assert_eq!(status, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_the_held_ones_still_served() {
    let stack = Stack::start(
        Roles::API_ONLY,
        "[api]\nmax_connections = 2\nheader_read_timeout_secs = 30",
    )
    .await;
    let a = TcpStream::connect(addr(&stack)).await.unwrap();
    let mut b = TcpStream::connect(addr(&stack)).await.unwrap();
    // Both are accepted and held: a third is closed at once.
    let mut third = TcpStream::connect(addr(&stack)).await.unwrap();
    let _ = third
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = closed_within(&mut third, Duration::from_secs(10)).await;
    assert_eq!(
        answer.as_deref(),
        Some(&b""[..]),
        "the third connection was answered or left open"
    );
    // A held connection is served.
    b.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = closed_within(&mut b, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // Once the held ones are gone, new connections are served again.
    drop((a, b));
    eventually(
        "a new connection served",
        Duration::from_secs(10),
        || async {
            let client = reqwest::Client::new();
            let resp = client
                .get(format!("{}/health/live", stack.api))
                .send()
                .await;
            resp.ok().filter(|r| r.status().is_success()).map(|_| ())
        },
    )
    .await;
    stack.stop().await;
}

/// A body that stops coming: the request fails after `api.body_idle_timeout_secs`
/// instead of holding the connection (and the upload's writer) open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_fails_the_request() {
    let stack = Stack::start(Roles::API_ONLY, "[api]\nbody_idle_timeout_secs = 1").await;
    let mut conn = TcpStream::connect(addr(&stack)).await.unwrap();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 1000\r\n\r\nid,label\n1,a\n",
        jobs_testkit::KEY
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // 988 bytes never come.
    let answer = closed_within(&mut conn, Duration::from_secs(15)).await;
    let answer = answer.expect("the request was still waiting 15 s after a 1 s body timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "a stalled upload is refused, not recorded: {text}"
    );
    // Nothing was recorded.
    let (status, uploads) = stack.get("/v1/uploads").await;
    assert_eq!(status, 200);
    assert_eq!(uploads["uploads"], serde_json::json!([]), "{uploads}");
    stack.stop().await;
}
