//! `jobs-api`: serves the HTTP API on `api.listen` until SIGTERM.

fn main() -> std::process::ExitCode {
    jobs_queue::service::main("jobs-api", |rt, stop| async move {
        let listener = tokio::net::TcpListener::bind(rt.cfg.api.listen).await?;
        let state = jobs_api::state(&rt, jobs_builtins::job_types(), stop.clone()).await?;
        jobs_api::run(state, listener, stop).await?;
        Ok(())
    })
}
