//! Terminal state is the contract (issue 14 items 3, 4, 7, 11): a job leaves `JOBS` only with its
//! terminal event and KV state stored, once; a job whose every delivery died is dead-lettered by
//! the next delivery, without any advisory listener; payloads stay within the bounds; the job
//! waiting on another is settled however that one ends (a continuation that cannot be published
//! included); drain hand-backs use up no deliveries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::client::Client;
use lightbox_runtime::events::{JobEvent, JobState, MAX_ERROR_BYTES, MAX_REPORT_BYTES};
use lightbox_runtime::infra::{self, Overrides};
use lightbox_runtime::job::{Envelope, Function, JobId};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, TessellateRequest};
use lightbox_runtime::worker::{Handler, Job, Outcome, Worker};
use lightbox_runtime::{JobError, ObjectKey, Store};
use lightbox_tests::{
    function_binary, local_store, noisy_png, wait_consuming, worker_config, FunctionProcess,
    NatsServer, TempDir,
};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::security::{function_env_as, secured_server, user_config};

/// How long a test waits for something that should happen within seconds.
const PATIENCE: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

async fn jobs_left(client: &Client) -> u64 {
    let mut stream = client.infra.jobs.clone();
    stream.info().await.unwrap().state.messages
}

/// How many events of `state` the job has in `EVENTS`.
async fn events_of(client: &Client, job_id: &str, state: JobState) -> usize {
    let stream = client.js.get_stream("EVENTS").await.unwrap();
    let subject = lightbox_runtime::events::event_subject(job_id, state);
    let mut subjects = stream.info_with_subjects(subject).await.unwrap();
    let mut count = 0;
    while let Some(Ok((_, n))) = subjects.next().await {
        count += n;
    }
    count
}

/// The job's state once it is `state` (KV).
async fn state_becomes(client: &Client, job_id: &str, state: JobState) -> JobEvent {
    eventually(
        &format!("job {job_id} becoming {}", state.as_str()),
        || async {
            client
                .status(job_id)
                .await
                .ok()
                .flatten()
                .filter(|e| e.state == state)
        },
    )
    .await
}

/// A convert job that converts a large noisy PNG (seconds of work) through the real binary.
fn big_convert(input: &ObjectKey) -> Envelope<ConvertRequest> {
    Envelope::new(
        Function::Convert,
        ConvertRequest {
            input: input.clone(),
            output: Some(ObjectKey::new("outputs/terminal/big.webp").unwrap()),
            format: ImageFormat::Webp,
            quality: Some(90),
            lossless: false,
            resize: None,
        },
    )
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_on_every_delivery_is_dead_lettered_by_a_worker_started_later()
{
    // The production shape: auth.conf users, bind-only workers, definitions applied by admin —
    // with one delivery allowed and a short lease.
    let server = secured_server().await;
    let admin = Client::connect(&lightbox_runtime::config::NatsConfig {
        bind_only: false,
        ..user_config(&server, "admin")
    })
    .await
    .unwrap();
    let limits = Overrides {
        ack_wait: Some(Duration::from_secs(3)),
        max_deliver: Some(1),
        ..Overrides::default()
    };
    infra::ensure_consumer(&admin.infra.jobs, "convert", &limits)
        .await
        .unwrap();
    let store_dir = TempDir::new("terminal-kill-store");
    let logs = TempDir::new("terminal-kill-logs");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let input = ObjectKey::new("inputs/big.png").unwrap();
    store
        .put(&input, Bytes::from(noisy_png(3000, 3000, 7)))
        .await
        .unwrap();
    let env = function_env_as(&server, "convert", &store_dir);
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();

    let first = FunctionProcess::spawn(&function_binary("lightbox-convert"), &env, &logs, "first");
    wait_consuming(&first, Duration::from_secs(30)).await;
    let envelope = big_convert(&input);
    let id = envelope.id.to_string();
    backend.submit("convert", &envelope).await.unwrap();
    let mut events = Box::pin(backend.watch(&id).await.unwrap());
    while let Some(event) = events.next().await {
        if event.unwrap().state == JobState::Started {
            break;
        }
    }
    first.signal("KILL");
    drop(first);
    // Nobody serves the queue for longer than the lease: nothing hears about the job meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(jobs_left(&backend).await, 1, "the job is still queued");

    let second =
        FunctionProcess::spawn(&function_binary("lightbox-convert"), &env, &logs, "second");
    let event = state_becomes(&backend, &id, JobState::Failed).await;
    let error = event.error.clone().unwrap();
    assert!(
        error.message.contains("no attempt finished"),
        "{event:?}\n{}",
        second.log_text()
    );
    let letters = backend.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].job_id, id);
    assert_eq!(letters[0].queue, "convert");
    eventually("the job leaving JOBS", || async {
        (jobs_left(&backend).await == 0).then_some(())
    })
    .await;
    assert_eq!(events_of(&backend, &id, JobState::Failed).await, 1);
    assert!(
        !store
            .exists(&ObjectKey::new("outputs/terminal/big.webp").unwrap())
            .await
            .unwrap(),
        "the dead-lettered job was not run again"
    );
}

#[tokio::test]
async fn a_continuation_that_cannot_be_published_fails_the_waiting_job_on_the_last_delivery() {
    // Under auth.conf the convert user may not publish render jobs, so a convert job continued by
    // a render cannot publish its continuation: each delivery's publish is refused.
    let server = secured_server().await;
    let admin = Client::connect(&lightbox_runtime::config::NatsConfig {
        bind_only: false,
        ..user_config(&server, "admin")
    })
    .await
    .unwrap();
    let limits = Overrides {
        ack_wait: Some(Duration::from_secs(30)),
        max_deliver: Some(2),
        ..Overrides::default()
    };
    infra::ensure_consumer(&admin.infra.jobs, "convert", &limits)
        .await
        .unwrap();
    let store_dir = TempDir::new("terminal-then-store");
    let logs = TempDir::new("terminal-then-logs");
    let store = Store::connect(local_store(&store_dir)).unwrap();
    let input = ObjectKey::new("inputs/small.png").unwrap();
    store
        .put(&input, Bytes::from(noisy_png(16, 16, 3)))
        .await
        .unwrap();
    let env = function_env_as(&server, "convert", &store_dir);
    let worker = FunctionProcess::spawn(&function_binary("lightbox-convert"), &env, &logs, "then");
    wait_consuming(&worker, Duration::from_secs(30)).await;
    let backend = Client::connect(&user_config(&server, "backend"))
        .await
        .unwrap();

    let continued = Envelope::new(
        Function::Render,
        serde_json::json!({"model": "models/a.glb", "outputs": [{"width": 32}]}),
    );
    let mut envelope = big_convert(&input);
    envelope.request.output = Some(ObjectKey::new("outputs/terminal/small.webp").unwrap());
    envelope.then = Some(lightbox_runtime::job::Continuation {
        subject: "render.light".into(),
        job: serde_json::to_value(&continued).unwrap(),
    });
    let id = envelope.id.to_string();
    backend.submit("convert", &envelope).await.unwrap();

    let event = state_becomes(&backend, &continued.id.to_string(), JobState::Failed).await;
    let message = event.error.unwrap().message;
    assert!(
        message.contains(&format!("convert job {id}, which this job waited for, succeeded, but the job continuing it could not be published after 2 deliveries")),
        "{message}\n{}",
        worker.log_text()
    );
    let done = state_becomes(&backend, &id, JobState::Succeeded).await;
    assert_eq!(
        done.attempt, 1,
        "the work ran once; the second delivery reported it"
    );
    assert_eq!(events_of(&backend, &id, JobState::Succeeded).await, 1);
    eventually("the job leaving JOBS", || async {
        (jobs_left(&backend).await == 0).then_some(())
    })
    .await;
}

/// A request for the in-process handlers below.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Ask {
    /// Wait for the test's go before finishing.
    gate: bool,
    /// Return a result and output list far over the event bound.
    big: bool,
    /// Fail permanently with a message this long.
    fail_with_bytes: usize,
    /// Run until stopped on the first attempt.
    hold_first_attempt: bool,
}

#[derive(Clone, Default)]
struct AskHandler {
    runs: Arc<AtomicUsize>,
    running: Arc<Notify>,
    go: Arc<Notify>,
}

impl Handler for AskHandler {
    type Request = Ask;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<Ask>) -> Result<Outcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let ask = job.request;
        if ask.gate {
            self.running.notify_one();
            self.go.notified().await;
        }
        if ask.hold_first_attempt && job.ctx.attempt == 1 {
            job.ctx.stopped().await;
            return Err(JobError::Cancelled);
        }
        if ask.fail_with_bytes > 0 {
            return Err(JobError::permanent(format!(
                "unknown field `{}`",
                "f".repeat(ask.fail_with_bytes)
            )));
        }
        if ask.big {
            return Ok(Outcome {
                outputs: (0..1080)
                    .map(|i| {
                        format!(
                            "outputs/render/{}/turntable-{}/frame-{i:04}.png",
                            "0123456789abcdef".repeat(4),
                            i / 360
                        )
                    })
                    .collect(),
                result: serde_json::json!({ "frames": "x".repeat(100_000) }),
                ..Outcome::default()
            });
        }
        Ok(Outcome {
            result: serde_json::json!({ "attempt": job.ctx.attempt }),
            ..Outcome::default()
        })
    }
}

struct Setup {
    nats: NatsServer,
    store_dir: TempDir,
    client: Client,
}

async fn setup() -> Setup {
    let nats = NatsServer::start();
    let client = Client::connect(&nats.nats_config()).await.unwrap();
    Setup {
        nats,
        store_dir: TempDir::new("terminal-store"),
        client,
    }
}

impl Setup {
    fn config(&self, queue: &str) -> lightbox_runtime::config::WorkerConfig {
        worker_config(&self.nats, local_store(&self.store_dir), queue, 1)
    }

    async fn worker<H: Handler>(&self, queue: &str, handler: H) -> Worker {
        Worker::start(self.config(queue), handler).await.unwrap()
    }

    async fn submit(&self, ask: Ask) -> String {
        let envelope = Envelope::new(Function::Convert, ask);
        self.client.submit("convert", &envelope).await.unwrap();
        envelope.id.to_string()
    }

    /// Writes the record an earlier delivery's runtime leaves when it finishes a job (before it
    /// reports the success), through the store's raw object API as an operator could.
    async fn write_record(&self, function: &str, event: &JobEvent) {
        let store = Store::connect(local_store(&self.store_dir)).unwrap();
        let record = serde_json::json!({
            "job_id": event.job_id,
            "stream_seq": 0,
            "handbacks": 0,
            "outcome": {"msg_id": format!("{}-0-1-succeeded", event.job_id), "event": event},
        });
        store
            .inner
            .put(
                &object_store::path::Path::from(format!(
                    "results/{function}/{}.json",
                    event.job_id
                )),
                serde_json::to_vec(&record).unwrap().into(),
            )
            .await
            .unwrap();
    }

    /// The runtime's record of a job, read from the store as an operator would.
    async fn record(&self, key: &str) -> serde_json::Value {
        let store = Store::connect(local_store(&self.store_dir)).unwrap();
        let bytes = store
            .inner
            .get(&object_store::path::Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

#[tokio::test]
async fn an_outage_of_the_jobs_bucket_at_finish_leaves_the_job_queued_and_a_redelivery_stores_one_terminal_state(
) {
    let setup = setup().await;
    let handler = AskHandler::default();
    let worker = setup.worker("convert", handler.clone()).await;
    let id = setup
        .submit(Ask {
            gate: true,
            ..Ask::default()
        })
        .await;
    handler.running.notified().await;

    // The bucket goes away while the job runs: its outcome cannot be stored.
    setup.client.js.delete_key_value("jobs").await.unwrap();
    handler.go.notify_one();
    let consumer = |client: &Client| {
        let jobs = client.infra.jobs.clone();
        async move { jobs.consumer_info("convert").await.unwrap() }
    };
    eventually("a redelivery after the failed finish", || async {
        (consumer(&setup.client).await.num_redelivered > 0).then_some(())
    })
    .await;
    assert_eq!(
        jobs_left(&setup.client).await,
        1,
        "a job whose terminal state could not be stored is not acked"
    );

    // The bucket comes back (an operator applies the definitions again).
    infra::apply(&setup.client.js, &Overrides::default())
        .await
        .unwrap();
    let event = state_becomes(&setup.client, &id, JobState::Succeeded).await;
    assert_eq!(event.attempt, 1, "the outcome of the run that finished");
    eventually("the job leaving JOBS", || async {
        (jobs_left(&setup.client).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        1,
        "the work is not repeated"
    );
    assert_eq!(
        events_of(&setup.client, &id, JobState::Succeeded).await,
        1,
        "one terminal event, whatever the retries"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_result_is_summarised_naming_the_stored_result_and_an_oversized_error_is_cut()
{
    let setup = setup().await;
    let handler = AskHandler::default();
    let worker = setup.worker("convert", handler.clone()).await;

    // Three 360-frame turntables' worth of outputs and a 100 KB result.
    let big = setup
        .submit(Ask {
            big: true,
            ..Ask::default()
        })
        .await;
    let event = state_becomes(&setup.client, &big, JobState::Succeeded).await;
    assert!(serde_json::to_vec(&event).unwrap().len() <= MAX_REPORT_BYTES);
    let result = event.result.clone().unwrap();
    assert_eq!(result["summarized"], true, "{result}");
    assert_eq!(result["outputs_total"], 1080);
    let key = result["full_result"].as_str().unwrap();
    assert_eq!(key, format!("results/convert/{big}.json"));
    let record = setup.record(key).await;
    let full = &record["outcome"]["event"];
    assert_eq!(full["outputs"].as_array().unwrap().len(), 1080);
    assert_eq!(full["result"]["frames"].as_str().unwrap().len(), 100_000);
    assert_eq!(events_of(&setup.client, &big, JobState::Succeeded).await, 1);

    // An error quoting a 70 KB field.
    let bad = setup
        .submit(Ask {
            fail_with_bytes: 70_000,
            ..Ask::default()
        })
        .await;
    let event = state_becomes(&setup.client, &bad, JobState::Failed).await;
    let message = event.error.unwrap().message;
    assert!(message.len() <= MAX_ERROR_BYTES, "{}", message.len());
    assert!(message.starts_with("unknown field `fff"), "{message}");
    assert_eq!(events_of(&setup.client, &bad, JobState::Failed).await, 1);
    let letters = setup.client.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].job_id, bad);
    eventually("both jobs leaving JOBS", || async {
        (jobs_left(&setup.client).await == 0).then_some(())
    })
    .await;
    assert_eq!(handler.runs.load(Ordering::SeqCst), 2);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_handed_back_by_a_draining_worker_uses_up_no_delivery() {
    let setup = setup().await;
    let handler = AskHandler::default();
    let mut config = setup.config("convert");
    config.max_deliver = Some(1);
    config.drain_grace = Duration::from_millis(200);
    let draining = Worker::start(config.clone(), handler.clone())
        .await
        .unwrap();
    let id = setup
        .submit(Ask {
            hold_first_attempt: true,
            ..Ask::default()
        })
        .await;
    eventually("the job starting", || async {
        (handler.runs.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    draining.shutdown().await.unwrap();

    // The one delivery the job may use is still its own.
    let worker = Worker::start(config, handler.clone()).await.unwrap();
    let event = state_becomes(&setup.client, &id, JobState::Succeeded).await;
    assert_eq!(event.attempt, 2, "{event:?}");
    assert!(setup.client.dead_letters(10).await.unwrap().is_empty());
    worker.shutdown().await.unwrap();
}

/// A convert-queue handler that needs a tessellate job first and is continued by it: the
/// continued request names the job that ran first in its output key.
#[derive(Clone, Default)]
struct Waiter;

fn waiter_request() -> ConvertRequest {
    ConvertRequest {
        input: ObjectKey::new("inputs/part.step").unwrap(),
        output: None,
        format: ImageFormat::Png,
        quality: None,
        lossless: false,
        resize: None,
    }
}

impl Handler for Waiter {
    type Request = ConvertRequest;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<ConvertRequest>) -> Result<Outcome, JobError> {
        let Job { request, ctx } = job;
        if let Some(output) = &request.output {
            return Ok(Outcome {
                result: serde_json::json!({ "continued_by": output.as_str() }),
                ..Outcome::default()
            });
        }
        let first = TessellateRequest {
            input: request.input.clone(),
            output: None,
            linear_deflection: Some(0.001),
            angular_deflection: None,
        };
        let id = ctx
            .run_first(&first, |id: JobId| ConvertRequest {
                output: Some(ObjectKey::new(format!("outputs/after/{id}.png")).unwrap()),
                ..request.clone()
            })
            .await?;
        Ok(Outcome::waiting_for(id))
    }
}

/// A tessellate stand-in: never finishes when asked to hang (its worker is then taken away).
#[derive(Clone, Default)]
struct FirstJob {
    hang: bool,
    runs: Arc<AtomicUsize>,
}

impl Handler for FirstJob {
    type Request = TessellateRequest;
    const FUNCTION: Function = Function::Tessellate;
    const DEFAULT_QUEUE: &'static str = "tessellate";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, _job: Job<TessellateRequest>) -> Result<Outcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(Outcome::default())
    }
}

/// Submits a waiting job and returns its id and the id of the job it waits for.
async fn waiting_job(setup: &Setup) -> (String, String) {
    let envelope = Envelope::new(Function::Convert, waiter_request());
    let id = envelope.id.to_string();
    setup.client.submit("convert", &envelope).await.unwrap();
    let waiting = state_becomes(&setup.client, &id, JobState::Waiting).await;
    let message = waiting.progress.unwrap().message;
    let first = message.trim_start_matches("waiting for job ").to_owned();
    (id, first)
}

#[tokio::test]
async fn the_waiting_job_fails_when_the_job_it_waits_for_is_dead_lettered() {
    let setup = setup().await;
    let waiter = setup.worker("convert", Waiter).await;
    let (id, first) = waiting_job(&setup).await;

    // The first job's worker dies mid-job (its connection is gone; its handler never returns).
    let hanging = FirstJob {
        hang: true,
        ..FirstJob::default()
    };
    let mut config = setup.config("tessellate");
    config.max_deliver = Some(1);
    let doomed = Worker::start(config.clone(), hanging.clone())
        .await
        .unwrap();
    eventually("the first job starting", || async {
        (hanging.runs.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    doomed.client.drain().await.unwrap();

    let next = FirstJob::default();
    let worker = Worker::start(config, next.clone()).await.unwrap();
    let failed = state_becomes(&setup.client, &first, JobState::Failed).await;
    assert!(
        failed
            .error
            .unwrap()
            .message
            .contains("no attempt finished"),
        "the first job was dead-lettered"
    );
    let event = state_becomes(&setup.client, &id, JobState::Failed).await;
    let message = event.error.unwrap().message;
    assert!(
        message.contains(&format!(
            "tessellate job {first}, which this job waited for, failed"
        )),
        "{message}"
    );
    assert_eq!(
        next.runs.load(Ordering::SeqCst),
        0,
        "not run past its limit"
    );
    let letters = setup.client.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].job_id, first);
    waiter.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_waiting_job_is_settled_when_the_job_it_waits_for_is_found_done_or_cancelled() {
    let setup = setup().await;
    let waiter = setup.worker("convert", Waiter).await;

    // Found succeeded (an earlier delivery finished it and its ack was lost): the continuation
    // is published all the same, and the waiting job runs on.
    let (done_id, done_first) = waiting_job(&setup).await;
    let mut finished = JobEvent::new(&done_first, "tessellate", JobState::Succeeded, 1, "earlier");
    finished.result = Some(serde_json::json!({}));
    setup.write_record("tessellate", &finished).await;
    put_state(&setup.client, &finished).await;
    // Found cancelled while queued: the waiting job fails, naming it.
    let (cancelled_id, cancelled_first) = waiting_job(&setup).await;
    let cancelled = JobEvent::new(
        &cancelled_first,
        "tessellate",
        JobState::Cancelled,
        0,
        "cli",
    );
    put_state(&setup.client, &cancelled).await;

    let first = FirstJob::default();
    let worker = setup.worker("tessellate", first.clone()).await;
    let event = state_becomes(&setup.client, &done_id, JobState::Succeeded).await;
    assert_eq!(
        event.result.unwrap()["continued_by"],
        format!("outputs/after/{done_first}.png")
    );
    let event = state_becomes(&setup.client, &cancelled_id, JobState::Failed).await;
    let message = event.error.unwrap().message;
    assert!(
        message.contains(&format!(
            "tessellate job {cancelled_first}, which this job waited for, was cancelled"
        )),
        "{message}"
    );
    assert_eq!(
        first.runs.load(Ordering::SeqCst),
        0,
        "neither first job ran"
    );
    eventually("every job leaving JOBS", || async {
        (jobs_left(&setup.client).await == 0).then_some(())
    })
    .await;
    waiter.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}

/// Writes a job's KV state as a worker or `lightbox cancel` would.
async fn put_state(client: &Client, event: &JobEvent) {
    client
        .infra
        .kv
        .put(
            lightbox_runtime::events::subject_token(&event.job_id),
            Bytes::from(serde_json::to_vec(event).unwrap()),
        )
        .await
        .unwrap();
}
