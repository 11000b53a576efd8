//! `jobs-notifier`: delivers webhooks for finished jobs until SIGTERM.

use std::sync::Arc;

use jobs_notifier::NotifierContext;

fn main() -> std::process::ExitCode {
    jobs_queue::service::main("jobs-notifier", |rt, stop| async move {
        let cfg = rt.cfg.clone();
        let base_url = if cfg.api.public_url.is_empty() {
            format!("http://{}", cfg.api.listen)
        } else {
            cfg.api.public_url.clone()
        };
        let ctx = Arc::new(NotifierContext {
            store: rt.store,
            transport: rt.transport,
            queues: rt.queues,
            http: NotifierContext::http_client(cfg.notifier.timeout()),
            schedule: cfg.notifier.retry_schedule(),
            allow_private_networks: cfg.notifier.allow_private_networks,
            timeout: cfg.notifier.timeout(),
            max_delay: cfg.queue.max_delay(),
            shutdown_grace: cfg.queue.shutdown_grace(),
            base_url,
        });
        jobs_notifier::run_until_stopped(ctx, 4, stop).await;
        Ok(())
    })
}
