//! `jobs-enqueuer`: plans submitted jobs into work items until SIGTERM.

use std::sync::Arc;

use jobs_enqueuer::EnqueuerContext;

fn main() -> std::process::ExitCode {
    jobs_core::service::main("jobs-enqueuer", |rt, stop| async move {
        let ctx = Arc::new(EnqueuerContext {
            max_delivery_count: rt.cfg.queue.max_delivery_count,
            exact_plan_max_rows: rt.cfg.export.exact_plan_max_rows,
            store: rt.store,
            transport: rt.transport,
            queues: rt.queues,
            catalog: rt.catalog,
        });
        jobs_enqueuer::run_until_stopped(ctx, stop).await;
        Ok(())
    })
}
