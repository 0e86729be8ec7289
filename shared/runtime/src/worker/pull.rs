//! The pull loop: wait for a free slot, ask for exactly as many messages as there are free
//! slots, hand each delivery to its own task, bind again when the consumer or the connection is
//! lost, and drain on stop.
//!
//! A consumer, stream or connection that is gone is bound again with backoff for up to the
//! rebind window (`LIGHTBOX_REBIND_SECS`, default 60 s). If that fails the loop drains and
//! returns the error, naming the consumer, and [`super::run`] exits non-zero so the supervisor
//! restarts the process: a worker never stays up idle and silent.

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::{BatchConfig, Config as PullConfig};
use async_nats::jetstream::consumer::Consumer;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::StatusCode;
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error, info, warn};

use super::{delivery, Handler, Shared};
use crate::infra;

/// How long one pull request waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Idle heartbeat the server sends while a pull request waits; missing ones mean the consumer
/// or the connection is gone, and the loop binds again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// The first pause between attempts to bind again; it doubles up to [`REBIND_MAX_PAUSE`].
const REBIND_FIRST_PAUSE: Duration = Duration::from_millis(250);
const REBIND_MAX_PAUSE: Duration = Duration::from_secs(5);

/// How long a lost consumer is bound again before the worker gives up and exits.
fn rebind_window() -> Duration {
    static WINDOW: OnceLock<Duration> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        Duration::from_secs_f64(crate::config::env_parse("LIGHTBOX_REBIND_SECS", 60.0f64).max(0.0))
    })
}

pub(super) async fn pull_loop<H: Handler>(
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
    service: super::service::Service,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut consumer = bind(&shared).await?;
    let inbox = shared.client.new_inbox();
    let mut inbox_sub = shared.client.subscribe(inbox.clone()).await?;
    let mut jobs = tokio::task::JoinSet::new();
    // Set when the loop cannot go on: it drains, then returns this.
    let mut fatal: Option<anyhow::Error> = None;

    'pull: loop {
        // Wait for at least one free slot, then take every free slot: never pull more than that.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            _ = stop.changed() => break 'pull,
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let request = BatchConfig {
            batch: permits.len(),
            expires: Some(PULL_EXPIRES),
            idle_heartbeat: PULL_HEARTBEAT,
            ..Default::default()
        };
        if let Err(err) = consumer.request_batch(request, inbox.clone().into()).await {
            warn!(error = %err, "pull request failed; binding again");
            match rebind(&shared, &mut stop).await {
                Ok(Some(fresh)) => consumer = fresh,
                Ok(None) => break 'pull,
                Err(err) => {
                    fatal = Some(err);
                    break 'pull;
                }
            }
            continue;
        }
        // Receive until the request is filled, expires, or the server goes quiet.
        while !permits.is_empty() {
            let next = tokio::select! {
                next = tokio::time::timeout(PULL_HEARTBEAT * 3, inbox_sub.next()) => next,
                _ = stop.changed() => break 'pull,
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => {
                    fatal = Some(anyhow::anyhow!(
                        "the NATS subscription of the pull loop for consumer {} closed",
                        infra::consumer_name(&shared.config.queue)
                    ));
                    break 'pull;
                }
                Err(_) => {
                    warn!(
                        consumer = %infra::consumer_name(&shared.config.queue),
                        "no heartbeat from the consumer; binding again"
                    );
                    match rebind(&shared, &mut stop).await {
                        Ok(Some(fresh)) => consumer = fresh,
                        Ok(None) => break 'pull,
                        Err(err) => {
                            fatal = Some(err);
                            break 'pull;
                        }
                    }
                    // A fresh inbox so late replies to the old request cannot overfill the slots.
                    match shared.client.subscribe(inbox.clone()).await {
                        Ok(fresh) => inbox_sub = fresh,
                        Err(err) => {
                            fatal = Some(
                                anyhow::Error::new(err).context("subscribing to the pull inbox"),
                            );
                            break 'pull;
                        }
                    }
                    break;
                }
            };
            match message.status {
                None | Some(StatusCode::OK) => {
                    let permit = permits.pop().expect("a slot per requested message");
                    let message = jetstream::Message {
                        message,
                        context: shared.infra.js.clone(),
                    };
                    jobs.spawn(delivery::process(shared.clone(), message, permit));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => break,
                Some(status) => {
                    // The server ended the request early (409: the consumer was deleted, a
                    // leader changed, a limit was hit). Whether the consumer is gone is asked of
                    // the JetStream API, whose answer has an error code, not read from the
                    // status description.
                    let description = message.description.clone().unwrap_or_default();
                    debug!(%status, %description, "pull request ended");
                    if consumer_is_gone(&consumer).await {
                        warn!(
                            consumer = %infra::consumer_name(&shared.config.queue),
                            "consumer was deleted; binding again"
                        );
                        match rebind(&shared, &mut stop).await {
                            Ok(Some(fresh)) => consumer = fresh,
                            Ok(None) => break 'pull,
                            Err(err) => {
                                fatal = Some(err);
                                break 'pull;
                            }
                        }
                    }
                    break;
                }
            }
        }
        // Reap finished tasks so the set does not grow without bound.
        while jobs.try_join_next().is_some() {}
    }

    // Stop pulling: dropping the subscription removes our interest, so the server forgets the
    // waiting request. Anything already delivered to us goes straight back.
    let _ = inbox_sub.unsubscribe().await;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(50), inbox_sub.next()).await
    {
        if matches!(message.status, None | Some(StatusCode::OK)) {
            let message = jetstream::Message {
                message,
                context: shared.infra.js.clone(),
            };
            // Not started here: recorded as a hand-back, so it uses up no delivery.
            super::settle::hand_back(&shared, &message).await;
        }
    }
    let in_flight = jobs.len();
    if in_flight > 0 {
        info!(
            in_flight,
            grace_s = shared.config.drain_grace.as_secs_f64(),
            "waiting for running jobs"
        );
    }
    let drained = tokio::time::timeout(shared.config.drain_grace, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = jobs.len(),
            "drain grace over: giving running jobs back to the queue"
        );
        let _ = shared.abandon.send(true);
        while jobs.join_next().await.is_some() {}
    }
    let _ = service.stop().await;
    match fatal {
        Some(err) => {
            error!(error = %format!("{err:#}"), "the pull loop cannot go on; exiting");
            Err(err)
        }
        None => Ok(()),
    }
}

/// Binds the consumer again after it, its stream or the connection was lost: retries with
/// backoff for up to [`rebind_window`]. `Ok(None)` when the worker is told to stop meanwhile;
/// an error naming the consumer when the window passes.
async fn rebind<H: Handler>(
    shared: &Shared<H>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Consumer<PullConfig>>> {
    let name = infra::consumer_name(&shared.config.queue);
    let window = rebind_window();
    let started = Instant::now();
    let mut pause = REBIND_FIRST_PAUSE;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let err = match bind(shared).await {
            Ok(consumer) => {
                if attempts > 1 {
                    info!(consumer = %name, attempts, "consumer bound again");
                }
                return Ok(Some(consumer));
            }
            Err(err) => err,
        };
        if started.elapsed() >= window {
            return Err(err).with_context(|| {
                format!(
                    "consumer {name} on stream {} is gone and could not be bound again within {} s ({attempts} attempts)",
                    infra::JOBS_STREAM,
                    window.as_secs_f64()
                )
            });
        }
        warn!(consumer = %name, error = %format!("{err:#}"), retry_in_ms = pause.as_millis() as u64, "binding the consumer failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return Ok(None),
        }
        pause = (pause * 2).min(REBIND_MAX_PAUSE);
    }
}

/// Creates (or, bind-only, opens) this worker's durable consumer.
async fn bind<H: Handler>(shared: &Shared<H>) -> anyhow::Result<Consumer<PullConfig>> {
    infra::ensure_consumer(&shared.infra.jobs, &shared.config.queue, &shared.overrides).await
}

/// Whether the server says the consumer no longer exists (API error code 10014).
async fn consumer_is_gone(consumer: &Consumer<PullConfig>) -> bool {
    match consumer.get_info().await {
        Ok(_) => false,
        Err(err) => err.kind() == ConsumerInfoErrorKind::NotFound,
    }
}
