//! Running the four services in one process (`offload up`, `offload demo`): each gets its
//! context from one shared [`Runtime`], and all stop together.

use std::sync::Arc;

use anyhow::Context;
use jobs_enqueuer::EnqueuerContext;
use jobs_notifier::NotifierContext;
use jobs_queue::runtime::Runtime;
use jobs_sdk::Kinds;
use jobs_worker::{WorkerContext, WorkerSettings};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which services beside the API one process runs (all of them, normally; tests start some
/// later).
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub enqueuer: bool,
    pub worker: bool,
    pub notifier: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        enqueuer: true,
        worker: true,
        notifier: true,
    };
    /// The API alone: jobs are accepted and stay queued.
    pub const API_ONLY: Roles = Roles {
        enqueuer: false,
        worker: false,
        notifier: false,
    };
}

/// The running services.
#[derive(Debug)]
pub struct Services {
    pub api_url: String,
    pub runtime: Runtime,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Services {
    /// Starts API, enqueuer, worker and notifier. The API binds `listener`.
    pub async fn start(runtime: Runtime, listener: TcpListener) -> anyhow::Result<Self> {
        Self::start_roles(runtime, listener, Roles::ALL).await
    }

    /// Starts the API and the chosen other services, with the built-in job kinds.
    pub async fn start_roles(
        runtime: Runtime,
        listener: TcpListener,
        roles: Roles,
    ) -> anyhow::Result<Self> {
        Self::start_with(runtime, listener, roles, jobs_builtins::kinds()).await
    }

    /// Starts the API and the chosen other services, running `kinds`.
    pub async fn start_with(
        runtime: Runtime,
        listener: TcpListener,
        roles: Roles,
        kinds: Kinds,
    ) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let cfg = runtime.cfg.clone();
        let mut tasks = JoinSet::new();

        let api_url = format!("http://{}", listener.local_addr()?);
        let state = jobs_api::state(&runtime, kinds.job_types.clone(), stop.clone())
            .await
            .context("starting the API")?;
        let api_stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) = jobs_api::run(state, listener, api_stop).await {
                tracing::error!(error = %e, "the API stopped");
            }
        });

        let enqueuer = Arc::new(EnqueuerContext {
            store: runtime.store.clone(),
            transport: runtime.transport.clone(),
            queues: runtime.queues.clone(),
            job_types: kinds.job_types.clone(),
            env: runtime.kind_env(),
            max_delivery_count: cfg.queue.max_delivery_count,
            tx_sender: runtime.tx_sender.clone(),
        });
        if roles.enqueuer {
            tasks.spawn(jobs_enqueuer::run_until_stopped(enqueuer, stop.clone()));
        }

        let worker = Arc::new(WorkerContext {
            env: runtime.kind_env(),
            store: runtime.store.clone(),
            transport: runtime.transport.clone(),
            queues: runtime.queues.clone(),
            registry: kinds.processors.clone(),
            settings: WorkerSettings::from_config(&cfg),
        });
        if roles.worker {
            tasks.spawn(jobs_worker::run_until_stopped(worker, stop.clone()));
        }

        let notifier = Arc::new(NotifierContext {
            store: runtime.store.clone(),
            transport: runtime.transport.clone(),
            queues: runtime.queues.clone(),
            http: NotifierContext::http_client(cfg.notifier.timeout()),
            schedule: cfg.notifier.retry_schedule(),
            allow_private_networks: cfg.notifier.allow_private_networks,
            timeout: cfg.notifier.timeout(),
            max_delay: cfg.queue.max_delay(),
            shutdown_grace: cfg.queue.shutdown_grace(),
            base_url: if cfg.api.public_url.is_empty() {
                api_url.clone()
            } else {
                cfg.api.public_url.clone()
            },
        });
        if roles.notifier {
            tasks.spawn(jobs_notifier::run_until_stopped(notifier, 4, stop.clone()));
        }

        Ok(Self {
            api_url,
            runtime,
            tasks,
            stop,
        })
    }

    /// Stops every service, letting work in progress finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
