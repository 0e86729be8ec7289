//! Cooperative stops, the deadline from submission, a pull loop that never idles silently, and
//! `lightbox cancel` as a compare-and-set, through the real binaries where it matters.

use crate::stack::{stack, Stack};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::infra::{self, Overrides, LOCKS_BUCKET};
use lightbox_runtime::job::{now_ms, Envelope, Function};
use lightbox_runtime::requests::{
    ConvertRequest, ImageFormat, RenderOutputRequest, RenderRequest, TessellateRequest,
};
use lightbox_runtime::worker::{Handler, Job, Outcome, StopReason, Worker};
use lightbox_runtime::{JobError, ObjectKey};
use lightbox_tessellate::samples::{self, Sample};
use lightbox_tests::{
    function_binary, function_env, local_store, noisy_png, wait_consuming, worker_config,
    FunctionProcess, TempDir,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// In process: what a handler sees when it is stopped, and what becomes of its job.

/// Waits until the runtime stops it, records why, "cleans up" (counts it) and returns.
#[derive(Default, Clone)]
struct StoppableHandler {
    runs: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<StopReason>>>,
    cleaned_up: Arc<AtomicU64>,
}

impl Handler for StoppableHandler {
    type Request = Value;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<Value>) -> Result<Outcome, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if job.request.get("quick").is_some() {
            return Ok(Outcome::default());
        }
        let reason = job.ctx.stopped().await;
        assert!(job.ctx.is_cancelled(), "the flag is set with the signal");
        assert_eq!(job.ctx.stop_reason(), Some(reason));
        self.seen.lock().unwrap().push(reason);
        // Cleaning up takes a moment, well inside the stop grace: the runtime waits for it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.cleaned_up.fetch_add(1, Ordering::SeqCst);
        Err(JobError::Cancelled)
    }
}

struct InProcess {
    nats: lightbox_tests::NatsServer,
    store: TempDir,
    client: lightbox_runtime::client::Client,
}

async fn in_process() -> InProcess {
    let nats = lightbox_tests::NatsServer::start();
    let client = lightbox_runtime::client::Client::connect(&nats.nats_config())
        .await
        .unwrap();
    InProcess {
        nats,
        store: TempDir::new("store"),
        client,
    }
}

async fn start(setup: &InProcess, handler: StoppableHandler, drain_grace: Duration) -> Worker {
    let mut config = worker_config(&setup.nats, local_store(&setup.store), "convert", 1);
    config.drain_grace = drain_grace;
    Worker::start(config, handler).await.unwrap()
}

async fn wait_runs(handler: &StoppableHandler, runs: u64) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while handler.runs.load(Ordering::SeqCst) < runs {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the job starts");
}

#[tokio::test]
async fn a_deadline_and_a_cancel_let_the_handler_clean_up_before_the_job_ends() {
    let setup = in_process().await;
    let handler = StoppableHandler::default();
    let worker = start(&setup, handler.clone(), Duration::from_secs(10)).await;

    let mut late = Envelope::new(Function::Convert, json!({}));
    late.deadline_ms = Some(800);
    setup.client.submit("convert", &late).await.unwrap();
    let event = setup
        .client
        .wait(&late.id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    assert!(
        event
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("deadline of 800 ms exceeded"),
        "{event:?}"
    );
    // The terminal state was stored after the handler had cleaned up, not after an abort.
    assert_eq!(handler.cleaned_up.load(Ordering::SeqCst), 1);

    let cancelled = Envelope::new(Function::Convert, json!({}));
    setup.client.submit("convert", &cancelled).await.unwrap();
    wait_runs(&handler, 2).await;
    setup
        .client
        .cancel(&cancelled.id.to_string())
        .await
        .unwrap();
    let event = setup
        .client
        .wait(&cancelled.id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Cancelled, "{event:?}");
    // The worker's own `cancelled` follows the handler's cleanup.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let status = setup
                .client
                .status(&cancelled.id.to_string())
                .await
                .unwrap()
                .unwrap();
            if status.worker != "lightbox-cli" {
                assert_eq!(status.state, JobState::Cancelled);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the worker records the cancellation");
    assert_eq!(handler.cleaned_up.load(Ordering::SeqCst), 2);
    assert_eq!(
        *handler.seen.lock().unwrap(),
        vec![StopReason::Deadline, StopReason::Cancelled]
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_end_of_the_drain_grace_stops_the_handler_and_gives_the_job_back() {
    let setup = in_process().await;
    let handler = StoppableHandler::default();
    let worker = start(&setup, handler.clone(), Duration::from_millis(200)).await;
    let envelope = Envelope::new(Function::Convert, json!({}));
    setup.client.submit("convert", &envelope).await.unwrap();
    wait_runs(&handler, 1).await;
    worker.shutdown().await.unwrap();
    // Shutdown returned after the handler cleaned up: it was stopped, not aborted.
    assert_eq!(handler.cleaned_up.load(Ordering::SeqCst), 1);
    assert_eq!(*handler.seen.lock().unwrap(), vec![StopReason::Drain]);
    let status = setup
        .client
        .status(&envelope.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, JobState::Retrying, "given back: {status:?}");
}

#[tokio::test]
async fn a_job_whose_deadline_passed_while_queued_fails_without_running() {
    let setup = in_process().await;
    // Queued before any worker runs, ten seconds ago by its envelope, with a five-second
    // deadline: it is past its deadline when it is delivered.
    let mut stale = Envelope::new(Function::Convert, json!({"quick": true}));
    stale.submitted_at_ms = now_ms() - 10_000;
    stale.deadline_ms = Some(5_000);
    setup.client.submit("convert", &stale).await.unwrap();
    // A job with time left runs as usual.
    let mut fresh = Envelope::new(Function::Convert, json!({"quick": true}));
    fresh.deadline_ms = Some(60_000);
    setup.client.submit("convert", &fresh).await.unwrap();

    let handler = StoppableHandler::default();
    let worker = start(&setup, handler.clone(), Duration::from_secs(1)).await;
    let mut events = Vec::new();
    let event = setup
        .client
        .wait(&stale.id.to_string(), Duration::from_secs(20), |e| {
            events.push(e.state)
        })
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    let message = event.error.unwrap().message;
    assert!(
        message.contains("deadline of 5000 ms exceeded while queued"),
        "{message}"
    );
    assert!(
        !events.contains(&JobState::Started),
        "never started: {events:?}"
    );
    let event = setup
        .client
        .wait(&fresh.id.to_string(), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        1,
        "only the fresh job ran"
    );
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Render: a stop during a turntable's uploads leaves nothing behind.

impl Stack {
    async fn heavy_render_worker(&self, extra: &[(&str, &str)]) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.push(("LIGHTBOX_QUEUE".into(), "render.heavy".into()));
        env.push(("LIGHTBOX_CONCURRENCY".into(), "1".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = FunctionProcess::spawn(
            &function_binary("lightbox-render"),
            &env,
            &self.logs,
            "render-heavy",
        );
        wait_consuming(&process, Duration::from_secs(30)).await;
        process
    }
}

/// Runs a render job to its end.
async fn run_render(stack: &Stack, envelope: Envelope<RenderRequest>) -> JobEvent {
    stack
        .client
        .submit("render.heavy", &envelope)
        .await
        .unwrap();
    stack
        .client
        .wait(&envelope.id.to_string(), Duration::from_secs(120), |_| {})
        .await
        .unwrap()
}

/// Where the uploads of [`turntables`] fall in a job's life, from submission: the job's
/// total and upload milliseconds, measured on a warm engine (the second run).
async fn calibrate(stack: &Stack, worker: &FunctionProcess, model: &ObjectKey) -> (f64, f64) {
    let mut timing = (0.0, 0.0);
    for attempt in 0..2 {
        let prefix = format!("outputs/calibrate-{attempt}");
        let envelope = Envelope::new(Function::Render, turntables(model, &prefix));
        let submitted = envelope.submitted_at_ms;
        let event = run_render(stack, envelope).await;
        assert_eq!(
            event.state,
            JobState::Succeeded,
            "{event:?}\n{}",
            worker.log_text()
        );
        timing = ((event.at_ms - submitted) as f64, event.timings_ms["upload"]);
        assert_eq!(
            stack.list(&prefix).await.len(),
            722,
            "720 frames and two animations"
        );
    }
    assert!(timing.1 > 100.0, "uploads take a while: {timing:?}");
    timing
}

/// Two 360-frame turntables, small enough that uploading their 722 objects is most of the job.
fn turntables(model: &ObjectKey, prefix: &str) -> RenderRequest {
    let output = |name: &str| {
        let Value::Object(spec) = json!({
            "width": 32, "height": 32, "samples": 1,
            "turntable": {"frames": 360}, "format": {"kind": "webp"}
        }) else {
            unreachable!()
        };
        RenderOutputRequest {
            output: Some(ObjectKey::new(format!("{prefix}/{name}.webp")).unwrap()),
            spec,
        }
    };
    RenderRequest {
        model: model.clone(),
        usd_master: None,
        outputs: vec![output("a"), output("b")],
        engine: None,
        tessellation: None,
        tessellated_by: None,
    }
}

/// How a render is stopped in [`stop_amid_uploads`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Deadline,
    Cancel,
}

/// Renders [`turntables`] under `prefix-<n>` and stops each job (by deadline or cancel) at a
/// point of its uploads, until one stop falls amid them: the worker then logs `marker` (it
/// removed objects it had written). Every job, wherever its stop fell, ends either succeeded
/// with all 722 objects or stopped with none. Where the uploads fall is measured from the
/// latest job that succeeded, as the machine's speed varies from job to job.
async fn stop_amid_uploads(
    stack: &Stack,
    worker: &FunctionProcess,
    model: &ObjectKey,
    prefix: &str,
    stops: &[Stop],
    marker: &str,
) {
    let (mut total_ms, mut upload_ms) = calibrate(stack, worker, model).await;
    let fractions = [0.5, 0.2, 0.8, 0.35, 0.65, 0.5, 0.1, 0.9, 0.5, 0.3, 0.7, 0.5];
    for (attempt, fraction) in fractions.into_iter().enumerate() {
        let stop = stops[attempt % stops.len()];
        let at_ms = (total_ms - upload_ms + fraction * upload_ms) as u64;
        let prefix = format!("{prefix}-{attempt}");
        let mut envelope = Envelope::new(Function::Render, turntables(model, &prefix));
        let id = envelope.id.to_string();
        let submitted = envelope.submitted_at_ms;
        let markers_before = worker.log_text().matches(marker).count();
        let event = match stop {
            Stop::Deadline => {
                envelope.deadline_ms = Some(at_ms);
                run_render(stack, envelope).await
            }
            Stop::Cancel => {
                let canceller = {
                    let client = stack.client.clone();
                    let id = id.clone();
                    let due = envelope.submitted_at_ms + at_ms;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms())))
                            .await;
                        client.cancel(&id).await.unwrap();
                    })
                };
                let event = run_render(stack, envelope).await;
                canceller.await.unwrap();
                // The CLI's `cancelled` comes first; wait for the worker's own record.
                worker_final(stack, &id).await.unwrap_or(event)
            }
        };
        let mut written = stack.list(&prefix).await;
        if event.state != JobState::Succeeded && !written.is_empty() {
            // What a job's guard deletes from its own task (an aborted job) may finish just
            // after the job's end.
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while !stack.list(&prefix).await.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            written = stack.list(&prefix).await;
        }
        let landed = worker.log_text().matches(marker).count() > markers_before;
        eprintln!(
            "{stop:?} at {fraction} of the uploads ({at_ms} of {total_ms:.0} ms): {}, {} objects left, removed some: {landed}",
            event.state.as_str(),
            written.len()
        );
        match event.state {
            JobState::Succeeded => {
                assert_eq!(written.len(), 722, "{event:?}");
                total_ms = event.at_ms.saturating_sub(submitted) as f64;
                upload_ms = event.timings_ms.get("upload").copied().unwrap_or(upload_ms);
            }
            JobState::Failed | JobState::Cancelled => {
                if event.state == JobState::Failed {
                    let message = &event.error.as_ref().unwrap().message;
                    assert!(message.contains("deadline of"), "{event:?}");
                }
                assert!(
                    written.is_empty(),
                    "a stopped render left {} objects under {prefix}: {:?}\n{}",
                    written.len(),
                    written.iter().take(3).collect::<Vec<_>>(),
                    worker.log_text()
                );
            }
            _ => panic!("unexpected end {event:?}"),
        }
        if landed {
            return;
        }
    }
    panic!(
        "no stop fell amid the uploads in {} jobs\n{}",
        fractions.len(),
        worker.log_text()
    );
}

#[tokio::test]
async fn a_render_stopped_while_it_uploads_a_turntable_leaves_no_outputs() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.15),
        )
        .await;
    let worker = stack.heavy_render_worker(&[]).await;
    stop_amid_uploads(
        &stack,
        &worker,
        &model,
        "outputs/stop",
        &[Stop::Deadline, Stop::Cancel],
        "removed the outputs written before the job stopped or failed",
    )
    .await;
}

#[tokio::test]
async fn a_render_aborted_while_it_uploads_still_leaves_no_outputs() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.15),
        )
        .await;
    // No stop grace: a stopped job's task is aborted at once, mid-upload, so only the uploads
    // guard's `Drop` can remove what it wrote.
    let worker = stack
        .heavy_render_worker(&[("LIGHTBOX_STOP_GRACE_MS", "0")])
        .await;
    stop_amid_uploads(
        &stack,
        &worker,
        &model,
        "outputs/abort",
        &[Stop::Deadline],
        "removing the outputs of a job that was aborted part-way",
    )
    .await;
}

/// The worker's own terminal record of a job the CLI cancelled (it follows the CLI's); `None`
/// when the worker wrote none (the job never ran).
async fn worker_final(stack: &Stack, id: &str) -> Option<JobEvent> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = stack.client.status(id).await.unwrap() {
                if status.state.is_terminal() && status.worker != "lightbox-cli" {
                    return status;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .ok()
}

// ---------------------------------------------------------------------------------------------
// Tessellate: a drained or killed worker leaves no lock and no OCCT child.

/// The isolated children (`__lightbox-isolated-child tessellate ...`) whose parent is `parent`.
fn occt_children(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the fields after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // `lightbox_isolate::CHILD_ARG`, the hidden argument of every sandboxed child.
        if String::from_utf8_lossy(&cmdline).contains("__lightbox-isolated-child") {
            children.push(pid);
        }
    }
    children
}

/// Whether a process is gone (or a zombie nobody reaped yet: it runs no more).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < timeout, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lock_keys(stack: &Stack) -> BTreeSet<String> {
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let Ok(bucket) = js.get_key_value(LOCKS_BUCKET).await else {
        return BTreeSet::new();
    };
    let keys = bucket.keys().await.unwrap();
    keys.filter_map(|key| async move { key.ok() })
        .collect()
        .await
}

impl Stack {
    fn tessellate_worker(&self, label: &str, extra: &[(&str, &str)]) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.push(("LIGHTBOX_TESSELLATE_FAULT_INJECTION".into(), "1".into()));
        env.push(("LIGHTBOX_TESSELLATE_TIMEOUT_SECS".into(), "5".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FunctionProcess::spawn(
            &function_binary("lightbox-tessellate"),
            &env,
            &self.logs,
            label,
        )
    }

    /// A STEP file whose OCCT child hangs (a test fault), uploaded.
    async fn hanging_step(&self, key: &str) -> ObjectKey {
        let text = String::from_utf8(samples::step_bytes(Sample::Bracket).unwrap()).unwrap();
        let hanging = text.replacen("HEADER;", "HEADER;\n/* lightbox-test-fault: hang */", 1);
        self.upload(key, hanging.into_bytes()).await
    }
}

fn tessellate_job(input: &ObjectKey) -> Envelope<TessellateRequest> {
    Envelope::new(
        Function::Tessellate,
        TessellateRequest {
            input: input.clone(),
            output: None,
            linear_deflection: None,
            angular_deflection: None,
        },
    )
}

#[tokio::test]
async fn a_drained_tessellation_kills_its_child_and_releases_its_lock_for_the_redelivery() {
    let stack = stack().await;
    let input = stack.hanging_step("inputs/hang-drain.step").await;
    let mut first = stack.tessellate_worker(
        "tessellate-drained",
        &[("LIGHTBOX_DRAIN_GRACE_SECS", "0.5")],
    );
    wait_consuming(&first, Duration::from_secs(30)).await;
    let envelope = tessellate_job(&input);
    let id = envelope.id.to_string();
    stack.client.submit("tessellate", &envelope).await.unwrap();
    // The child runs only once the job holds the lock.
    let children = wait_for("the OCCT child starts", Duration::from_secs(30), || {
        Some(occt_children(first.pid())).filter(|c| !c.is_empty())
    })
    .await;
    assert_eq!(lock_keys(&stack).await.len(), 1, "the job holds its lock");

    first.signal("TERM");
    let exited = first.wait_exit(Duration::from_secs(30));
    assert_eq!(
        exited,
        Some(true),
        "drained and exited 0\n{}",
        first.log_text()
    );
    for child in &children {
        assert!(is_gone(*child), "OCCT child {child} outlived the drain");
    }
    assert!(
        lock_keys(&stack).await.is_empty(),
        "the lock was released\n{}",
        first.log_text()
    );
    let status = stack.client.status(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Retrying, "given back: {status:?}");

    // The redelivery takes the lock at once and runs its own child, which the hang fault
    // keeps until the 5 s limit: a failure naming the limit, not a wait on a stale lock.
    let second = stack.tessellate_worker("tessellate-second", &[]);
    wait_consuming(&second, Duration::from_secs(30)).await;
    let event = stack
        .client
        .wait(&id, Duration::from_secs(25), |_| {})
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", second.log_text()));
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    let message = event.error.unwrap().message;
    assert!(message.contains("timed out after 5 s"), "{message}");
    assert!(
        lock_keys(&stack).await.is_empty(),
        "released after the failure"
    );
}

#[tokio::test]
async fn a_sigkilled_tessellate_worker_leaves_no_occt_child_running() {
    let stack = stack().await;
    let input = stack.hanging_step("inputs/hang-kill.step").await;
    let mut worker = stack.tessellate_worker(
        "tessellate-killed",
        &[("LIGHTBOX_TESSELLATE_TIMEOUT_SECS", "120")],
    );
    wait_consuming(&worker, Duration::from_secs(30)).await;
    stack
        .client
        .submit("tessellate", &tessellate_job(&input))
        .await
        .unwrap();
    let children = wait_for("the OCCT child starts", Duration::from_secs(30), || {
        Some(occt_children(worker.pid())).filter(|c| !c.is_empty())
    })
    .await;
    worker.signal("KILL");
    assert_eq!(worker.wait_exit(Duration::from_secs(10)), Some(false));
    // The parent-death signal ends the child at once; its 120 s limit would be far off.
    wait_for(
        "the OCCT child dies with its parent",
        Duration::from_secs(10),
        || children.iter().all(|child| is_gone(*child)).then_some(()),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The pull loop: a deleted consumer is bound again, or the worker exits saying so.

#[tokio::test]
async fn a_bind_only_worker_whose_consumer_is_deleted_binds_again_or_exits_naming_it() {
    let stack = stack().await;
    // Applied once, as `lightbox infra apply` does; the worker only binds.
    let admin = jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let applied = infra::ensure(&admin, &Overrides::default()).await.unwrap();
    infra::ensure_consumer(&applied.jobs, "convert", &Overrides::default())
        .await
        .unwrap();
    let mut env = function_env(&stack.nats, &stack.s3.env());
    env.push(("LIGHTBOX_BIND_ONLY".into(), "true".into()));
    env.push(("LIGHTBOX_REBIND_SECS".into(), "8".into()));
    let mut worker = FunctionProcess::spawn(
        &function_binary("lightbox-convert"),
        &env,
        &stack.logs,
        "convert-bind-only",
    );
    wait_consuming(&worker, Duration::from_secs(30)).await;
    let png = stack.upload("inputs/a.png", noisy_png(64, 64, 1)).await;
    let convert = |n: u32| {
        Envelope::new(
            Function::Convert,
            ConvertRequest {
                input: png.clone(),
                output: Some(ObjectKey::new(format!("outputs/a-{n}.webp")).unwrap()),
                format: ImageFormat::Webp,
                quality: Some(80),
                lossless: false,
                resize: None,
            },
        )
    };

    // Deleted, then applied again inside the rebind window: the worker binds again and serves.
    applied.jobs.delete_consumer("convert").await.unwrap();
    wait_for("the worker notices", Duration::from_secs(20), || {
        worker
            .log_text()
            .contains("binding the consumer failed; retrying")
            .then_some(())
    })
    .await;
    infra::ensure_consumer(&applied.jobs, "convert", &Overrides::default())
        .await
        .unwrap();
    let job = convert(1);
    stack.client.submit("convert", &job).await.unwrap();
    let event = stack
        .client
        .wait(&job.id.to_string(), Duration::from_secs(30), |_| {})
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", worker.log_text()));
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert!(worker.log_text().contains("consumer bound again"));

    // Deleted for good: the worker exits non-zero, and its last words name the consumer.
    applied.jobs.delete_consumer("convert").await.unwrap();
    let exited = worker.wait_exit(Duration::from_secs(40));
    let log = worker.log_text();
    assert_eq!(exited, Some(false), "exits non-zero\n{log}");
    assert!(
        log.contains("consumer convert on stream JOBS is gone and could not be bound again"),
        "{log}"
    );
}

#[tokio::test]
async fn a_worker_whose_server_stays_gone_past_the_rebind_window_exits_naming_its_consumer() {
    let mut stack = stack().await;
    let mut env = function_env(&stack.nats, &stack.s3.env());
    env.push(("LIGHTBOX_REBIND_SECS".into(), "3".into()));
    let mut worker = FunctionProcess::spawn(
        &function_binary("lightbox-convert"),
        &env,
        &stack.logs,
        "convert-server-gone",
    );
    wait_consuming(&worker, Duration::from_secs(30)).await;
    stack.nats.stop();
    // Missed heartbeats (6 s), then binding again for 3 s with requests that cannot be
    // answered: the worker gives up and exits non-zero rather than idling.
    let exited = worker.wait_exit(Duration::from_secs(60));
    let log = worker.log_text();
    assert_eq!(exited, Some(false), "exits non-zero\n{log}");
    assert!(
        log.contains("consumer convert on stream JOBS is gone and could not be bound again"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// `lightbox cancel`.

fn lightbox(stack: &Stack, args: &[&str]) -> std::process::Output {
    let home = TempDir::new("home");
    std::process::Command::new(function_binary("lightbox"))
        .args(args)
        .env("NATS_URL", stack.nats.url())
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD")
        .env_remove("NATS_CREDS")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home.path())
        .output()
        .expect("lightbox runs")
}

#[tokio::test]
async fn cancel_refuses_unknown_jobs_and_leaves_finished_ones_as_they_are() {
    let stack = stack().await;
    let unknown = lightbox_runtime::JobId::new().to_string();
    let output = lightbox(&stack, &["cancel", &unknown]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no job {unknown} is known")),
        "{stderr}"
    );
    assert!(
        stack.client.status(&unknown).await.unwrap().is_none(),
        "nothing written"
    );

    // A finished job: said so, and its state stays.
    let worker = FunctionProcess::spawn(
        &function_binary("lightbox-convert"),
        &function_env(&stack.nats, &stack.s3.env()),
        &stack.logs,
        "convert",
    );
    wait_consuming(&worker, Duration::from_secs(30)).await;
    let png = stack.upload("inputs/b.png", noisy_png(32, 32, 2)).await;
    let job = Envelope::new(
        Function::Convert,
        ConvertRequest {
            input: png,
            output: Some(ObjectKey::new("outputs/b.webp").unwrap()),
            format: ImageFormat::Webp,
            quality: Some(80),
            lossless: false,
            resize: None,
        },
    );
    stack.client.submit("convert", &job).await.unwrap();
    let id = job.id.to_string();
    let done = stack
        .client
        .wait(&id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let output = lightbox(&stack, &["cancel", &id]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("already succeeded"), "{stdout}");
    let status = stack.client.status(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
}

#[tokio::test]
async fn cancel_never_overwrites_a_success_stored_while_it_runs() {
    let setup = in_process().await;
    // A worker storing `succeeded` (a plain KV put, as the runtime's reporter does) races each
    // cancel. Whichever comes first, the job must not end `cancelled` once its success was
    // stored: either the cancel sees it (already finished) or its compare-and-set fails and it
    // reads again; a success stored after a cancel overwrites it.
    let mut outcomes = (0, 0);
    for _ in 0..60 {
        let envelope = Envelope::new(Function::Convert, json!({}));
        setup.client.submit("convert", &envelope).await.unwrap();
        let id = envelope.id.to_string();
        let mut done = JobEvent::new(&id, "convert", JobState::Succeeded, 1, "racing-worker");
        done.outputs = vec!["outputs/raced.webp".into()];
        let succeed = {
            let kv = setup.client.infra.kv.clone();
            let key = lightbox_runtime::events::subject_token(&id);
            let bytes = serde_json::to_vec(&done).unwrap();
            async move { kv.put(key, bytes.into()).await.unwrap() }
        };
        let (cancelled, _) = tokio::join!(setup.client.cancel_job(&id), succeed);
        match cancelled.unwrap() {
            lightbox_runtime::client::CancelOutcome::Cancelled(_) => outcomes.0 += 1,
            lightbox_runtime::client::CancelOutcome::AlreadyFinished(event) => {
                assert_eq!(event.state, JobState::Succeeded);
                outcomes.1 += 1;
            }
        }
        let status = setup.client.status(&id).await.unwrap().unwrap();
        assert_eq!(
            status.state,
            JobState::Succeeded,
            "a stored success was overwritten: {status:?} (cancelled/already finished so far: {outcomes:?})"
        );
    }
}

#[tokio::test]
async fn a_lock_held_by_an_aborted_task_is_released_without_waiting_for_it_to_expire() {
    let setup = in_process().await;
    let overrides = Overrides::default();
    let locks = lightbox_runtime::locks::Locks::open(&setup.client.js, &overrides)
        .await
        .unwrap();
    // Far longer than this test may take: only the guard can free it in time.
    assert!(locks.lifetime() >= Duration::from_secs(60));
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let locks = locks.clone();
        async move {
            let held = locks.try_acquire("part-x", "job-1").await.unwrap().unwrap();
            taken_tx.send(()).unwrap();
            std::future::pending::<()>().await;
            drop(held);
        }
    });
    taken_rx.await.unwrap();
    assert!(locks
        .try_acquire("part-x", "job-2")
        .await
        .unwrap()
        .is_none());
    holder.abort();
    let _ = holder.await;
    let taken_over = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(lock) = locks.try_acquire("part-x", "job-2").await.unwrap() {
                return lock;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the aborted holder's lock was released");
    taken_over.release().await.unwrap();
}
