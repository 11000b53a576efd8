//! `jobs-worker`: processes work items until SIGTERM, finishing the ones in progress.

use std::sync::Arc;

use jobs_worker::{WorkerContext, WorkerSettings};

fn main() -> std::process::ExitCode {
    jobs_queue::service::main("jobs-worker", |rt, stop| async move {
        let ctx = Arc::new(WorkerContext {
            settings: WorkerSettings::from_config(&rt.cfg),
            env: rt.kind_env(),
            store: rt.store,
            transport: rt.transport,
            queues: rt.queues,
            registry: jobs_builtins::kinds().processors,
        });
        jobs_worker::run_until_stopped(ctx, stop).await;
        Ok(())
    })
}
