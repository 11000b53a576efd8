//! `jobs-enqueuer`: plans submitted jobs into work items and fires schedules until SIGTERM.

use std::sync::Arc;

use jobs_enqueuer::EnqueuerContext;
use jobs_queue::outbox::TxSender;

fn main() -> std::process::ExitCode {
    jobs_queue::service::main("jobs-enqueuer", |rt, stop| async move {
        // Fired schedules' messages go through the outbox on a broker: relay it from here too.
        if let TxSender::Outbox(outbox) = &rt.tx_sender {
            tokio::spawn(outbox.clone().relay_until_stopped(stop.clone()));
        }
        let ctx = Arc::new(EnqueuerContext {
            max_delivery_count: rt.cfg.queue.max_delivery_count,
            env: rt.kind_env(),
            tx_sender: rt.tx_sender,
            job_types: jobs_builtins::job_types(),
            store: rt.store,
            transport: rt.transport,
            queues: rt.queues,
        });
        jobs_enqueuer::run_until_stopped(ctx, stop).await;
        Ok(())
    })
}
