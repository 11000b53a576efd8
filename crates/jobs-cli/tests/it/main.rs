//! The whole stack (API, enqueuer, worker, notifier) in one process, and the `offload`
//! command line against it: what no one service owns. Each service's and each kind's own
//! behaviour is tested in its crate, on the same test kit (`jobs-testkit`).
#![allow(clippy::unwrap_used)]

mod azure;
mod cancel;
mod cli_output;
mod failed_results;
mod pool;
mod proxy;
mod schedules;
mod servicebus;
