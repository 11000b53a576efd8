//! The source's latency, kept as configured.
//!
//! tokio's timer fires on millisecond ticks and rounds every sleep up to the next one:
//! measured in the ingest benchmark, this mock's "20 ms" requests were served in 21.1 ms on
//! average (async-io's timer: 20.5 ms), 5% added to every request and to every figure
//! measured against the mock. Here one thread keeps the deadlines in a heap and waits on a
//! channel with the time to the next one as its timeout, which the operating system keeps
//! to its timer slack (50 µs on Linux) once the thread gets a core; each waiting request
//! gets a oneshot message. In the same benchmark, on 2 busy cores: 20.35–20.66 ms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use tokio::sync::oneshot;

/// Wakes requests at their deadlines; its thread ends when the clock is dropped.
#[derive(Debug)]
pub(crate) struct Clock {
    deadlines: mpsc::Sender<Deadline>,
}

#[derive(Debug)]
struct Deadline {
    at: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Clock {
    /// Starts the clock's thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mock-source-clock".into())
            .spawn(move || run(&rx))?;
        Ok(Self { deadlines: tx })
    }

    /// Returns at `at`.
    pub(crate) async fn sleep_until(&self, at: Instant) {
        let (wake, woken) = oneshot::channel();
        let sent = self.deadlines.send(Deadline { at, wake });
        // Without the thread (it cannot end while the clock lives), tokio's timer will do.
        if sent.is_err() || woken.await.is_err() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

fn run(deadlines: &mpsc::Receiver<Deadline>) {
    let mut due = BinaryHeap::<Reverse<Deadline>>::new();
    loop {
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = due.pop() {
                // The request may have gone (its client hung up): nothing to wake.
                let _ = d.wake.send(());
            }
        }
        let next = match due.peek() {
            Some(Reverse(d)) => deadlines.recv_timeout(d.at - now),
            None => deadlines.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(d) => due.push(Reverse(d)),
            Err(RecvTimeoutError::Timeout) => {}
            // The clock was dropped with its source: the requests still waiting were too.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_each_request_at_its_deadline_in_order() {
        let clock = std::sync::Arc::new(Clock::start().unwrap());
        let start = Instant::now();
        let waits = [30u64, 10, 20, 10, 0];
        let tasks: Vec<_> = waits
            .iter()
            .map(|&ms| {
                let clock = clock.clone();
                tokio::spawn(async move {
                    let at = start + Duration::from_millis(ms);
                    clock.sleep_until(at).await;
                    (ms, Instant::now())
                })
            })
            .collect();
        for task in tasks {
            let (ms, woke) = task.await.unwrap();
            // Never early; a deadline already past returns at once.
            assert!(woke >= start + Duration::from_millis(ms), "{ms} ms");
        }
    }
}
