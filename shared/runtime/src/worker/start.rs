//! Start-up and shutdown: connect, create or bind the streams, bucket and consumer from
//! `infra/nats/`, register the micro service, start the watchers and the pull loop; and the
//! process entry point [`run`] with its `--check` health probe.
//!
//! Binding or applying: with `LIGHTBOX_BIND_ONLY=true` (production: the Kubernetes config sets
//! it, and an `infra apply` Job creates the definitions first) a worker only looks up its
//! streams, bucket and consumer, changes nothing, and fails at start naming `lightbox infra
//! apply` when one is missing. Without it a worker creates or updates them from `infra/nats/`
//! with its overrides (test timings, replicas), so `lightbox up` and the test suite need no
//! separate step; that is a development convenience, and the reason it is not the default in
//! production manifests is that it would overwrite limits an operator changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use tokio::sync::watch;
use tracing::info;

use super::context::Broker;
use super::service::{self, Counters};
use super::{cancel, dlq, pull, Handler, Shared};
use crate::config::WorkerConfig;
use crate::events::Reporter;
use crate::infra::{self, Overrides};
use crate::store::Store;

/// A running worker. Dropping it does not stop it; call [`Worker::shutdown`].
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub counters: Arc<Counters>,
    pub client: async_nats::Client,
    /// Where `/metrics` is served, if anywhere (see [`crate::metrics`]).
    pub metrics_addr: Option<std::net::SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

/// The changes a worker's configuration makes to the committed definitions.
fn overrides(config: &WorkerConfig) -> Overrides {
    Overrides {
        replicas: Some(config.nats.replicas),
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
        bind_only: config.nats.bind_only,
    }
}

impl Worker {
    /// Connects, creates or updates streams and the consumer from `infra/nats/`, registers the
    /// micro service and starts pulling.
    pub async fn start<H: Handler>(config: WorkerConfig, handler: H) -> anyhow::Result<Self> {
        let started = Instant::now();
        let name = format!("lightbox-{}", H::FUNCTION);
        let client = config
            .nats
            .connect(&format!("{name}:{}", config.instance))
            .await?;
        let store =
            Store::connect(config.store.clone()).context("connecting to the object store")?;
        let js = jetstream::new(client.clone());
        let overrides = overrides(&config);
        // A cluster that is still electing leaders, or another instance creating the same
        // definitions at this moment, fails these steps for a while: retried, bounded.
        let budget = crate::config::startup_timeout_from_env();
        let infra = infra::retry_startup("binding streams and KV", budget, || {
            infra::ensure(&js, &overrides)
        })
        .await?;
        let consumer = infra::retry_startup("binding the consumer", budget, || {
            infra::ensure_consumer(&infra.jobs, &config.queue, &overrides)
        })
        .await?;
        let consumer_config = consumer.cached_info().config.clone();
        let counters = Arc::new(Counters::default());
        let (abandon, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            handler: Arc::new(handler),
            reporter: Reporter {
                js: js.clone(),
                kv: infra.kv.clone(),
            },
            broker: Arc::new(Broker::new(js.clone(), overrides.clone())),
            ack_wait: consumer_config.ack_wait,
            max_deliver: dlq::delivery_limit(&consumer_config, config.max_deliver)?,
            config,
            overrides,
            client: client.clone(),
            infra,
            store,
            counters: counters.clone(),
            running: cancel::Running::default(),
            abandon,
        });
        let service =
            service::register(&shared.client, &name, &shared.config, counters.clone()).await?;
        // Metrics are for watching, not for serving jobs: a port already taken is a warning.
        let (metrics_addr, metrics_task) =
            match crate::metrics::listen_addr(shared.config.metrics_addr.as_deref())? {
                None => (None, None),
                Some(addr) => {
                    let registry = crate::metrics::registry(H::FUNCTION.as_str(), counters.clone());
                    match crate::metrics::serve(addr, registry).await {
                        Ok((bound, task)) => {
                            info!(addr = %bound, "serving /metrics");
                            (Some(bound), Some(task))
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "not serving /metrics");
                            (None, None)
                        }
                    }
                }
            };
        cancel::spawn_listener(shared.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(pull::pull_loop(shared, stop_rx, service));
        info!(
            queue = %consumer_config.filter_subject,
            startup_ms = started.elapsed().as_secs_f64() * 1000.0,
            "consuming"
        );
        Ok(Self {
            stop,
            task,
            counters,
            client,
            metrics_addr,
            metrics_task,
        })
    }

    /// Stops pulling, waits for running jobs up to the drain grace, Naks the rest, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let result = self.task.await.context("worker task")?;
        if let Some(task) = self.metrics_task {
            task.abort();
        }
        let _ = self.client.flush().await;
        let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
        result
    }
}

/// Runs a function until SIGTERM or SIGINT, then drains. This is all a function's `main` calls.
///
/// With the single argument `--check` it instead asks the running instance named by
/// `LIGHTBOX_INSTANCE` for its status over NATS and exits non-zero if it does not answer
/// (the container health check and liveness probe).
pub async fn run<H: Handler>(handler: H) -> anyhow::Result<()> {
    crate::telemetry::init_service(&format!("lightbox-{}", H::FUNCTION));
    let config = WorkerConfig::from_env(H::DEFAULT_QUEUE, H::DEFAULT_CONCURRENCY);
    if std::env::args().nth(1).as_deref() == Some("--check") {
        return check::<H>(&config).await;
    }
    let mut worker = Worker::start(config, handler).await?;
    // The process ends with the worker: a pull loop that cannot go on (its consumer, stream or
    // connection gone past the rebind window) exits non-zero, so the supervisor restarts it.
    tokio::select! {
        _ = wait_for_signal() => {}
        ended = &mut worker.task => {
            let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
            return match ended.context("worker task")? {
                Err(err) => Err(err.context("the worker stopped serving")),
                Ok(()) => Err(anyhow::anyhow!("the worker stopped serving without being asked to")),
            };
        }
    }
    info!("signal received: draining");
    worker.shutdown().await?;
    info!("drained, exiting");
    Ok(())
}

/// Asks the instance's status endpoint for its counters; an answer means it is alive and serving.
async fn check<H: Handler>(config: &WorkerConfig) -> anyhow::Result<()> {
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        config.nats.connect("lightbox-check"),
    )
    .await
    .context("NATS did not answer within 5 s")??;
    let subject = service::status_subject(&format!("lightbox-{}", H::FUNCTION), &config.instance);
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        client.request(subject.clone(), bytes::Bytes::new()),
    )
    .await
    .with_context(|| format!("instance {} did not answer on {subject}", config.instance))?
    .with_context(|| format!("instance {} is not serving", config.instance))?;
    println!("{}", String::from_utf8_lossy(&reply.payload));
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
