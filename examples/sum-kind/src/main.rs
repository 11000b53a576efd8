//! `sum-kind`: every Offload service in one process, with the example kind registered.
//! Takes the same configuration as `offload up` (`--config FILE`, `OFFLOAD__…`).
//!
//! ```sh
//! cargo run -p sum-kind
//! curl -s -H 'Authorization: Bearer <key>' -d '{"kind":"example.sum","example.sum":{"from":1,"to":1000000}}' localhost:8080/v1/jobs
//! ```

fn main() -> std::process::ExitCode {
    jobs_queue::service::main("sum-kind", |rt, stop| async move {
        let listener = tokio::net::TcpListener::bind(rt.cfg.api.listen).await?;
        let services =
            jobs_cli::Services::start_with(rt, listener, jobs_cli::Roles::ALL, sum_kind::kinds())
                .await?;
        stop.cancelled().await;
        services.stop().await;
        Ok(())
    })
}
