use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::client::{Client, SubmitError};
use lightbox_runtime::events::JobState;
use lightbox_runtime::job::{Envelope, Function, JobId};
use lightbox_runtime::locks::Locks;
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, TessellateRequest};
use lightbox_runtime::worker::{Handler, Job, Outcome, Worker};
use lightbox_runtime::{JobError, ObjectKey};
use lightbox_tests::{local_store, worker_config, NatsServer, TempDir};
use serde::Deserialize;

/// A request for the test handler: sleep, then succeed, fail or panic as asked.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct TestRequest {
    sleep_ms: u64,
    panic: bool,
    /// `permanent` or `retryable`.
    fail: Option<String>,
    /// Fail only on attempts up to this one (then succeed).
    fail_until_attempt: u64,
}

/// A handler that records how many jobs run at once.
#[derive(Clone, Default)]
struct TestHandler {
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Handler for TestHandler {
    type Request = TestRequest;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<TestRequest>) -> Result<Outcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        let request = job.request;
        let mut slept = 0;
        while slept < request.sleep_ms {
            if job.ctx.is_cancelled() {
                self.current.fetch_sub(1, Ordering::SeqCst);
                return Err(JobError::Cancelled);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            slept += 10;
            job.ctx.progress(slept, request.sleep_ms, None, "sleeping");
        }
        self.current.fetch_sub(1, Ordering::SeqCst);
        if request.panic {
            panic!("test handler was asked to panic");
        }
        let failing =
            request.fail_until_attempt == 0 || job.ctx.attempt <= request.fail_until_attempt;
        match request.fail.as_deref() {
            Some("permanent") if failing => Err(JobError::permanent("asked to fail permanently")),
            Some("retryable") if failing => Err(JobError::retryable("asked to fail for now")),
            _ => Ok(Outcome {
                outputs: vec![],
                result: serde_json::json!({"attempt": job.ctx.attempt}),
                timings_ms: vec![],
                waiting_for: None,
            }),
        }
    }
}

fn job(request: TestRequest) -> Envelope<TestRequest> {
    Envelope::new(Function::Convert, request)
}

struct Setup {
    nats: NatsServer,
    _store: TempDir,
    client: Client,
}

async fn setup() -> Setup {
    let nats = NatsServer::start();
    let client = Client::connect(&nats.nats_config())
        .await
        .expect("client connects");
    Setup {
        nats,
        _store: TempDir::new("store"),
        client,
    }
}

async fn start(setup: &Setup, handler: TestHandler, concurrency: usize) -> Worker {
    let config = worker_config(
        &setup.nats,
        local_store(&setup._store),
        "convert",
        concurrency,
    );
    Worker::start(config, handler).await.expect("worker starts")
}

async fn start_handler<H: Handler>(setup: &Setup, queue: &str, handler: H) -> Worker {
    let config = worker_config(&setup.nats, local_store(&setup._store), queue, 1);
    Worker::start(config, handler).await.expect("worker starts")
}

async fn jobs_left(client: &Client) -> u64 {
    let mut stream = client.infra.jobs.clone();
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test]
async fn two_instances_with_limit_two_never_run_more_than_four_jobs() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let first = start(&setup, handler.clone(), 2).await;
    let second = start(&setup, handler.clone(), 2).await;
    let mut ids = Vec::new();
    for _ in 0..16 {
        ids.push(
            setup
                .client
                .submit(
                    "convert",
                    &job(TestRequest {
                        sleep_ms: 150,
                        ..Default::default()
                    }),
                )
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        let event = setup
            .client
            .wait(&id.to_string(), Duration::from_secs(30), |_| {})
            .await
            .unwrap();
        assert_eq!(event.state, JobState::Succeeded);
    }
    assert_eq!(handler.runs.load(Ordering::SeqCst), 16);
    let max = handler.max.load(Ordering::SeqCst);
    assert!(
        max <= 4,
        "ran {max} jobs at once with 2 instances x 2 slots"
    );
    assert_eq!(max, 4, "16 queued jobs should fill all 4 slots");
    for worker in [&first, &second] {
        assert!(worker.counters.max_in_flight.load(Ordering::SeqCst) <= 2);
    }
    assert_eq!(jobs_left(&setup.client).await, 0);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_the_worker_keeps_serving() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let worker = start(&setup, handler.clone(), 1).await;
    let bad = setup
        .client
        .submit(
            "convert",
            &job(TestRequest {
                panic: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&bad.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed);
    assert_eq!(event.attempt, 1, "a panic is final in one delivery");
    assert!(event
        .error
        .unwrap()
        .message
        .contains("handler panicked: test handler was asked to panic"));
    let good = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&good.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    let letters = setup.client.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].job_id, bad.to_string());
    assert_eq!(
        jobs_left(&setup.client).await,
        0,
        "a terminated job no longer sits in JOBS"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_and_then_dead_lettered() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let mut config = worker_config(&setup.nats, local_store(&setup._store), "convert", 2);
    config.max_deliver = Some(3);
    let worker = Worker::start(config, handler.clone()).await.unwrap();

    // Fails on attempts 1 and 2, succeeds on 3.
    let flaky = job(TestRequest {
        fail: Some("retryable".into()),
        fail_until_attempt: 2,
        ..Default::default()
    });
    let id = setup.client.submit("convert", &flaky).await.unwrap();
    let mut states = Vec::new();
    let event = setup
        .client
        .wait(&id.to_string(), Duration::from_secs(20), |e| {
            states.push(e.state)
        })
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    assert_eq!(event.attempt, 3);
    assert_eq!(
        states.iter().filter(|s| **s == JobState::Retrying).count(),
        2,
        "{states:?}"
    );

    // Always fails: after max_deliver attempts it is failed and dead-lettered.
    let hopeless = job(TestRequest {
        fail: Some("retryable".into()),
        ..Default::default()
    });
    let id = setup.client.submit("convert", &hopeless).await.unwrap();
    let event = setup
        .client
        .wait(&id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed);
    assert_eq!(event.attempt, 3);
    assert!(event
        .error
        .unwrap()
        .message
        .contains("gave up after 3 attempts"));
    let letters = setup.client.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, "3");
    assert_eq!(letters[0].queue, "convert");
    assert_eq!(jobs_left(&setup.client).await, 0);

    // Replay puts the original job back on its queue (it fails again, into a new letter).
    let replayed = setup
        .client
        .replay(&letters[0].seq.to_string())
        .await
        .unwrap();
    assert_eq!(replayed.job_id, id.to_string());
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let letters = setup.client.dead_letters(10).await.unwrap();
            if letters.len() == 1 && letters[0].seq != replayed.seq {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the replayed job ran again and was dead-lettered again");
    assert_eq!(handler.runs.load(Ordering::SeqCst), 3 + 3 + 3);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn permanent_failures_end_in_one_delivery() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let worker = start(&setup, handler.clone(), 2).await;
    let id = setup
        .client
        .submit(
            "convert",
            &job(TestRequest {
                fail: Some("permanent".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!((event.state, event.attempt), (JobState::Failed, 1));
    assert_eq!(event.error.as_ref().unwrap().kind, "permanent");
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    let status = setup.client.status(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(
        status.state,
        JobState::Failed,
        "one KV lookup answers what happened"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_published_twice_with_the_same_id_runs_once() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let worker = start(&setup, handler.clone(), 2).await;
    let envelope = job(TestRequest {
        sleep_ms: 50,
        ..Default::default()
    });
    setup.client.submit("convert", &envelope).await.unwrap();
    setup.client.submit("convert", &envelope).await.unwrap();
    let event = setup
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    // Published again later under another message id (past the dedupe window): the KV shows it
    // succeeded, so it is acknowledged without running.
    let payload = Bytes::from(envelope.to_json());
    setup
        .client
        .submit_raw("convert", &format!("{}-again", envelope.id), payload, None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while jobs_left(&setup.client).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn progress_events_flow_and_trace_context_is_continued() {
    let setup = setup().await;
    let worker = start(&setup, TestHandler::default(), 1).await;
    let envelope = job(TestRequest {
        sleep_ms: 600,
        ..Default::default()
    });
    let trace = lightbox_runtime::telemetry::TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    setup
        .client
        .submit_raw(
            "convert",
            &envelope.id.to_string(),
            Bytes::from(envelope.to_json()),
            Some(&trace),
        )
        .await
        .unwrap();
    let mut progress = 0;
    let event = setup
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(20), |e| {
            if e.state == JobState::Progress {
                progress += 1;
            }
        })
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    assert!(progress >= 2, "expected progress events, saw {progress}");
    assert_eq!(
        event.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert!(event.timings_ms.contains_key("run"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancellation_stops_running_jobs_and_skips_queued_ones() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let worker = start(&setup, handler.clone(), 1).await;
    let running = setup
        .client
        .submit(
            "convert",
            &job(TestRequest {
                sleep_ms: 20_000,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let queued = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap();
    // Wait until the first job runs, then cancel both.
    let mut events = Box::pin(setup.client.watch(&running.to_string()).await.unwrap());
    while let Some(event) = events.next().await {
        if event.unwrap().state == JobState::Progress {
            break;
        }
    }
    setup.client.cancel(&queued.to_string()).await.unwrap();
    setup.client.cancel(&running.to_string()).await.unwrap();
    let event = setup
        .client
        .wait(&running.to_string(), Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Cancelled);
    tokio::time::timeout(Duration::from_secs(10), async {
        while jobs_left(&setup.client).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both jobs leave the queue");
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        1,
        "the cancelled queued job never ran"
    );
    assert_eq!(
        setup
            .client
            .status(&queued.to_string())
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Cancelled
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_past_its_deadline_is_stopped_and_failed() {
    let setup = setup().await;
    let worker = start(&setup, TestHandler::default(), 1).await;
    let mut envelope = job(TestRequest {
        sleep_ms: 30_000,
        ..Default::default()
    });
    envelope.deadline_ms = Some(300);
    setup.client.submit("convert", &envelope).await.unwrap();
    let event = setup
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed);
    assert!(event
        .error
        .unwrap()
        .message
        .contains("deadline of 300 ms exceeded"));
    // The slot is free again: the next job runs at once.
    let next = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&next.to_string(), Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_instance_is_a_micro_service_with_counts() {
    let setup = setup().await;
    let worker = start(&setup, TestHandler::default(), 2).await;
    let id = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap();
    setup
        .client
        .wait(&id.to_string(), Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    let failing = setup
        .client
        .submit(
            "convert",
            &job(TestRequest {
                fail: Some("permanent".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    setup
        .client
        .wait(&failing.to_string(), Duration::from_secs(10), |_| {})
        .await
        .unwrap();

    let info = setup
        .client
        .nats
        .request("$SRV.INFO.lightbox-convert", Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "lightbox-convert");
    assert_eq!(info["metadata"]["queue"], "convert");
    assert!(info["version"].as_str().unwrap().starts_with("0."));
    let stats = setup
        .client
        .nats
        .request("$SRV.STATS.lightbox-convert", Bytes::new())
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    let data = &stats["endpoints"][0]["data"];
    assert_eq!(data["processed"], 2, "{stats}");
    assert_eq!(data["errors"], 1, "{stats}");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_refuses_new_jobs_with_a_clear_error() {
    let setup = setup().await;
    // No worker runs: fill the convert subject to its per-subject limit from infra/nats.
    let limit = {
        let config: serde_json::Value =
            serde_json::from_str(lightbox_runtime::infra::JOBS_STREAM_JSON).unwrap();
        config["max_msgs_per_subject"].as_u64().unwrap()
    };
    let mut acks = Vec::new();
    for i in 0..limit {
        let ack = setup
            .client
            .js
            .publish("convert", Bytes::from(format!("{i}")))
            .await
            .unwrap();
        acks.push(ack);
        if acks.len() >= 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.unwrap();
    }
    let err = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::QueueFull { .. }), "{err}");
    assert!(err.to_string().contains("queue convert is full"), "{err}");
    // Other queues are unaffected.
    let other = Envelope::new(Function::Tessellate, serde_json::json!({}));
    setup.client.submit("tessellate", &other).await.unwrap();
}

/// The handler that needs another job first takes a real convert request, because a
/// continuation is checked like a submitted job of its queue's function: `input` is what the job
/// run first reads (`inputs/fail.step` makes it fail), and the continuation names the job that
/// ran first in its `output` (`outputs/after/<id>.png`).
type ContinuingRequest = ConvertRequest;

fn continuing_request(input: &str) -> ContinuingRequest {
    ConvertRequest {
        input: ObjectKey::new(input).unwrap(),
        output: None,
        format: ImageFormat::Png,
        quality: None,
        lossless: false,
        resize: None,
    }
}

/// A convert-queue handler that runs a tessellate job first and finishes when continued.
#[derive(Clone, Default)]
struct ContinuingHandler {
    runs: Arc<AtomicUsize>,
}

impl Handler for ContinuingHandler {
    type Request = ContinuingRequest;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<ContinuingRequest>) -> Result<Outcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let Job { request, ctx } = job;
        if let Some(output) = &request.output {
            let first = output
                .as_str()
                .trim_start_matches("outputs/after/")
                .trim_end_matches(".png");
            return Ok(Outcome {
                result: serde_json::json!({ "first": first }),
                ..Outcome::default()
            });
        }
        let first = TessellateRequest {
            input: request.input.clone(),
            output: None,
            linear_deflection: Some(0.001),
            angular_deflection: None,
        };
        let continued = |id: JobId| ContinuingRequest {
            output: Some(ObjectKey::new(format!("outputs/after/{id}.png")).unwrap()),
            ..request.clone()
        };
        let id = ctx.run_first(&first, continued).await?;
        // Asking again (as a redelivery of this job would) names the same job and queues no
        // second one.
        let again = ctx.run_first(&first, continued).await?;
        assert_eq!(id, again, "a repeated request names the same job");
        Ok(Outcome::waiting_for(id))
    }
}

/// A stand-in tessellate function that records what it was asked.
#[derive(Clone, Default)]
struct RecordingTessellate {
    seen: Arc<std::sync::Mutex<Vec<(String, TessellateRequest)>>>,
}

impl Handler for RecordingTessellate {
    type Request = TessellateRequest;
    const FUNCTION: Function = Function::Tessellate;
    const DEFAULT_QUEUE: &'static str = "tessellate";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<TessellateRequest>) -> Result<Outcome, JobError> {
        let fail = job.request.input.as_str() == "inputs/fail.step";
        self.seen
            .lock()
            .unwrap()
            .push((job.ctx.id.to_string(), job.request));
        if fail {
            return Err(JobError::permanent("asked to fail"));
        }
        Ok(Outcome::default())
    }
}

#[tokio::test]
async fn a_job_runs_another_first_through_the_runtime_and_continues_with_the_new_request() {
    let setup = setup().await;
    let continuing = ContinuingHandler::default();
    let tessellate = RecordingTessellate::default();
    let worker = start_handler(&setup, "convert", continuing.clone()).await;
    let first_worker = start_handler(&setup, "tessellate", tessellate.clone()).await;

    let envelope = Envelope::new(Function::Convert, continuing_request("inputs/part.step"));
    let trace = lightbox_runtime::telemetry::TraceParent::parse(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    .unwrap();
    setup
        .client
        .submit_raw(
            "convert",
            &envelope.id.to_string(),
            Bytes::from(envelope.to_json()),
            Some(&trace),
        )
        .await
        .unwrap();
    let mut states = Vec::new();
    let event = setup
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(30), |e| {
            states.push(e.state)
        })
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert!(states.contains(&JobState::Waiting), "{states:?}");
    let first_id = event.result.as_ref().unwrap()["first"]
        .as_str()
        .unwrap()
        .to_owned();

    // The id the handler got is the id of the job that ran; it ran once, with the typed request.
    let first = setup.client.status(&first_id).await.unwrap().unwrap();
    assert_eq!(first.state, JobState::Succeeded, "{first:?}");
    assert_eq!(first.function, "tessellate");
    assert_eq!(
        first.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c"),
        "the trace continues into the job run first"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = tessellate.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, first_id);
    assert_eq!(seen[0].1.input.as_str(), "inputs/part.step");
    assert_eq!(seen[0].1.linear_deflection, Some(0.001));
    // Once waiting, once continued.
    assert_eq!(continuing.runs.load(Ordering::SeqCst), 2);
    assert_eq!(jobs_left(&setup.client).await, 0);

    // When the job run first fails for good, the job that waited for it fails with the reason.
    let doomed = Envelope::new(Function::Convert, continuing_request("inputs/fail.step"));
    setup.client.submit("convert", &doomed).await.unwrap();
    let event = setup
        .client
        .wait(&doomed.id.to_string(), Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    let error = event.error.unwrap();
    assert_eq!(error.kind, "permanent");
    assert!(
        error
            .message
            .contains("which this job waited for, failed: asked to fail"),
        "{}",
        error.message
    );
    worker.shutdown().await.unwrap();
    first_worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deleted_consumer_is_bound_again_without_waiting_for_missed_heartbeats() {
    let setup = setup().await;
    let handler = TestHandler::default();
    let worker = start(&setup, handler.clone(), 1).await;
    // Let the worker's pull request reach the server, then delete its consumer under it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup
        .client
        .infra
        .jobs
        .delete_consumer("convert")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deleted_at = std::time::Instant::now();
    let id = setup
        .client
        .submit("convert", &job(TestRequest::default()))
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded);
    // Missing heartbeats would be noticed only after 6 s; the server's 409 is acted on at once.
    let took = deleted_at.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the consumer was bound again only after {took:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_larger_than_a_message_may_be_is_refused_as_too_large() {
    let setup = setup().await;
    // nats-server's max_payload and the JOBS stream's max_msg_size are both 1 MiB.
    let envelope = Envelope::new(
        Function::Convert,
        serde_json::json!({ "padding": "x".repeat(2 * 1024 * 1024) }),
    );
    let err = setup.client.submit("convert", &envelope).await.unwrap_err();
    assert!(matches!(err, SubmitError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("too large to queue"), "{err}");
}

#[tokio::test]
async fn a_lock_is_held_by_one_holder_until_released_and_release_spares_a_later_holder() {
    let setup = setup().await;
    let js = setup.client.js.clone();
    let overrides = lightbox_runtime::infra::Overrides::default();
    let first = Locks::open(&js, &overrides).await.unwrap();
    let second = Locks::open(&js, &overrides).await.unwrap();
    assert!(first.lifetime() > Duration::ZERO);

    let held = first.try_acquire("part-a", "job-1").await.unwrap().unwrap();
    assert_eq!(held.name(), "part-a");
    assert!(second
        .try_acquire("part-a", "job-2")
        .await
        .unwrap()
        .is_none());
    // Other names are independent.
    let other = second
        .try_acquire("part-b", "job-2")
        .await
        .unwrap()
        .unwrap();
    held.release().await.unwrap();
    let taken_over = second
        .try_acquire("part-a", "job-2")
        .await
        .unwrap()
        .unwrap();
    assert!(first
        .try_acquire("part-a", "job-3")
        .await
        .unwrap()
        .is_none());

    // A stale holder (its lock expired and was taken again) releases nothing of the new one.
    let kv = js
        .get_key_value(lightbox_runtime::infra::LOCKS_BUCKET)
        .await
        .unwrap();
    kv.purge("part-b").await.unwrap();
    let new_holder = first.try_acquire("part-b", "job-4").await.unwrap().unwrap();
    other.release().await.unwrap();
    assert!(
        second
            .try_acquire("part-b", "job-5")
            .await
            .unwrap()
            .is_none(),
        "releasing a lost lock must not free the new holder's"
    );
    new_holder.release().await.unwrap();

    // A lock held under the same owner is an earlier delivery of the same job (its worker was
    // SIGKILLed holding it): the redelivery takes it over instead of waiting for it to expire,
    // and the dead holder's late release frees nothing of the new one.
    let dead_holder = first.try_acquire("part-c", "job-7").await.unwrap().unwrap();
    let redelivery = second
        .try_acquire("part-c", "job-7")
        .await
        .unwrap()
        .expect("the same job takes over its own lock");
    assert!(
        first
            .try_acquire("part-c", "job-8")
            .await
            .unwrap()
            .is_none(),
        "another job still waits"
    );
    dead_holder.release().await.unwrap();
    assert!(
        first
            .try_acquire("part-c", "job-8")
            .await
            .unwrap()
            .is_none(),
        "the earlier holder's release spares the redelivery's lock"
    );
    redelivery.release().await.unwrap();
    taken_over.release().await.unwrap();
    assert!(first
        .try_acquire("part-b", "job-6")
        .await
        .unwrap()
        .is_some());
}
