use crate::stack::{stack, Stack};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::requests::{RenderOutputRequest, RenderRequest, TessellationParams};
use lightbox_runtime::worker::{Handler, Job, Outcome, Worker};
use lightbox_runtime::{JobError, ObjectKey};
use lightbox_testmodels::hostile;
use lightbox_tests::{
    function_binary, function_env, wait_consuming, worker_config, FunctionProcess,
};
use serde_json::{json, Value};

impl Stack {
    async fn render_worker(&self, queue: &str, extra: &[(&str, &str)]) -> FunctionProcess {
        let mut env = function_env(&self.nats, &self.s3.env());
        env.push(("LIGHTBOX_QUEUE".into(), queue.into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = FunctionProcess::spawn(
            &function_binary("lightbox-render"),
            &env,
            &self.logs,
            &queue.replace('.', "-"),
        );
        wait_consuming(&process, Duration::from_secs(30)).await;
        process
    }

    /// Submits a render job to the queue its routing rule picks.
    async fn submit(&self, request: RenderRequest) -> (String, &'static str) {
        let queue = request.queue().as_str();
        let envelope = Envelope::new(Function::Render, request);
        self.client.submit(queue, &envelope).await.unwrap();
        (envelope.id.to_string(), queue)
    }

    async fn finish(&self, id: &str, timeout_s: u64) -> (JobEvent, Vec<JobEvent>) {
        let mut events = Vec::new();
        let event = self
            .client
            .wait(id, Duration::from_secs(timeout_s), |e| {
                events.push(e.clone())
            })
            .await
            .unwrap();
        (event, events)
    }
}

fn output(spec: Value) -> RenderOutputRequest {
    let Value::Object(spec) = spec else {
        panic!("spec must be an object")
    };
    RenderOutputRequest { output: None, spec }
}

fn request(model: &ObjectKey, outputs: Vec<Value>) -> RenderRequest {
    RenderRequest {
        model: model.clone(),
        usd_master: None,
        outputs: outputs.into_iter().map(output).collect(),
        engine: None,
        tessellation: None,
        tessellated_by: None,
    }
}

/// The wall-clock interval during which a job ran, from its events.
fn running_interval(events: &[JobEvent]) -> (u64, u64) {
    let start = events
        .iter()
        .find(|e| e.state == JobState::Started)
        .expect("started")
        .at_ms;
    let end = events
        .iter()
        .find(|e| e.state.is_terminal())
        .expect("finished")
        .at_ms;
    (start, end)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[tokio::test]
async fn thumbnails_run_side_by_side_while_a_heavy_render_runs() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.15),
        )
        .await;
    let _light = stack.render_worker("render.light", &[]).await;
    let _heavy = stack.render_worker("render.heavy", &[]).await;

    let (heavy, heavy_queue) = stack
        .submit(request(
            &model,
            vec![json!({"width": 1280, "height": 1280, "samples": 8})],
        ))
        .await;
    assert_eq!(heavy_queue, "render.heavy");
    let mut heavy_events = Box::pin(stack.client.watch(&heavy).await.unwrap());
    while let Some(event) = heavy_events.next().await {
        if event.unwrap().state == JobState::Started {
            break;
        }
    }
    let mut thumbnails = Vec::new();
    for seed in 0..2 {
        let (id, queue) = stack
            .submit(request(&model, vec![json!({"width": 256, "height": 256, "samples": 24, "seed": seed, "format": {"kind": "webp"}})]))
            .await;
        assert_eq!(queue, "render.light");
        thumbnails.push(id);
    }
    let mut intervals = Vec::new();
    for id in &thumbnails {
        let (event, events) = stack.finish(id, 180).await;
        assert_eq!(event.state, JobState::Succeeded, "{event:?}");
        let result = event.result.clone().unwrap();
        assert_eq!(result["source"], "glb");
        assert_eq!(result["outputs"][0]["width"], 256);
        let bytes = stack
            .store
            .get(&ObjectKey::new(event.outputs[0].clone()).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(&bytes[8..12], b"WEBP");
        intervals.push(running_interval(&events));
    }
    let (heavy_event, heavy_events) = stack.finish(&heavy, 300).await;
    assert_eq!(heavy_event.state, JobState::Succeeded, "{heavy_event:?}");
    let heavy_interval = running_interval(&heavy_events);
    assert!(
        overlaps(intervals[0], intervals[1]),
        "the two thumbnails ran at the same time: {intervals:?}"
    );
    for interval in &intervals {
        assert!(
            overlaps(*interval, heavy_interval),
            "a thumbnail ran while the heavy render ran: {interval:?} vs {heavy_interval:?}"
        );
    }
    for stage in [
        "fetch",
        "import",
        "accel_build",
        "render",
        "denoise",
        "encode",
        "upload",
    ] {
        assert!(
            heavy_event.timings_ms.contains_key(stage),
            "missing timing {stage}"
        );
    }
}

#[tokio::test]
async fn a_turntable_writes_frames_and_an_animation_and_reports_progress() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.05),
        )
        .await;
    let _heavy = stack.render_worker("render.heavy", &[]).await;
    let (id, queue) = stack
        .submit(request(&model, vec![json!({"width": 128, "height": 128, "samples": 32, "turntable": {"frames": 6}, "format": {"kind": "webp"}})]))
        .await;
    assert_eq!(queue, "render.heavy");
    let (event, events) = stack.finish(&id, 180).await;
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    let result = event.result.unwrap();
    assert_eq!(result["outputs"][0]["frames"], 6);
    let frames = result["outputs"][0]["frame_keys"].as_array().unwrap().len();
    assert_eq!(frames, 6);
    assert_eq!(
        stack.list("outputs/render").await.len(),
        7,
        "six frames and one animation"
    );
    let progress: Vec<_> = events.iter().filter_map(|e| e.progress.as_ref()).collect();
    assert!(!progress.is_empty(), "progress events while rendering");
    assert!(progress
        .iter()
        .all(|p| p.total == 6 * 32 && p.done <= p.total));
}

#[tokio::test]
async fn a_step_model_with_a_cached_glb_renders_without_tessellating() {
    let stack = stack().await;
    let step = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n".to_vec();
    let model = stack.upload("models/part.step", &step).await;
    let cached = lightbox_runtime::cache::tessellation_key(&step, &TessellationParams::default());
    stack
        .upload(cached.as_str(), &lightbox_testmodels::bearing_glb(0.05))
        .await;
    let _light = stack.render_worker("render.light", &[]).await;
    let (id, _) = stack
        .submit(request(
            &model,
            vec![json!({"width": 64, "height": 64, "samples": 4})],
        ))
        .await;
    let (event, _) = stack.finish(&id, 120).await;
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    let result = event.result.unwrap();
    assert_eq!(result["source"], "tessellation-cache");
    assert_eq!(result["model"], cached.as_str());
    let queues = stack.client.queues().await.unwrap();
    let tessellate = queues.iter().find(|q| q.queue == "tessellate").unwrap();
    assert_eq!(tessellate.pending, 0, "no tessellate job was published");
}

/// A stand-in tessellate function for the continuation test: it "meshes" by writing a prepared
/// GLB to the requested key (the real OCCT function has its own tests).
struct FakeTessellate {
    glb: Vec<u8>,
}

impl Handler for FakeTessellate {
    type Request = Value;
    const FUNCTION: Function = Function::Tessellate;
    const DEFAULT_QUEUE: &'static str = "tessellate";
    const DEFAULT_CONCURRENCY: usize = 1;

    async fn handle(&self, job: Job<Value>) -> Result<Outcome, JobError> {
        let output = ObjectKey::new(job.request["output"].as_str().unwrap_or_default())
            .map_err(|e| JobError::permanent(e.to_string()))?;
        job.ctx
            .store
            .put(&output, Bytes::from(self.glb.clone()))
            .await?;
        Ok(Outcome {
            outputs: vec![output.to_string()],
            ..Outcome::default()
        })
    }
}

#[tokio::test]
async fn a_step_model_without_cache_is_tessellated_by_a_continuation_that_holds_no_render_slot() {
    let stack = stack().await;
    let step =
        b"ISO-10303-21;\nDATA;\n#1=CARTESIAN_POINT('',(0.,0.,0.));\nENDSEC;\nEND-ISO-10303-21;\n"
            .to_vec();
    let model = stack.upload("models/fresh.step", &step).await;
    let _light = stack.render_worker("render.light", &[]).await;
    let (id, _) = stack
        .submit(request(
            &model,
            vec![json!({"width": 64, "height": 64, "samples": 4})],
        ))
        .await;
    // Nothing serves `tessellate` yet: the render job must park as `waiting` and free its slot.
    let mut events = Box::pin(stack.client.watch(&id).await.unwrap());
    let waiting = loop {
        let event = events.next().await.unwrap().unwrap();
        if event.state == JobState::Waiting {
            break event;
        }
        assert!(!event.state.is_terminal(), "{event:?}");
    };
    let tessellate_id = waiting.result.as_ref().unwrap()["tessellate_job"]
        .as_str()
        .unwrap()
        .to_owned();
    // The job's message is settled right after its `waiting` state is stored.
    let queues = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let queues = stack.client.queues().await.unwrap();
            if queues
                .iter()
                .find(|q| q.queue == "render.light")
                .unwrap()
                .in_flight
                == 0
            {
                break queues;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a waiting job holds no render slot");
    assert_eq!(
        queues
            .iter()
            .find(|q| q.queue == "tessellate")
            .unwrap()
            .pending,
        1
    );

    let mut store_config = stack.s3.store_config();
    store_config.allowed_prefixes =
        lightbox_runtime::store::StoreConfig::default().allowed_prefixes;
    let tessellator = Worker::start(
        worker_config(&stack.nats, store_config, "tessellate", 1),
        FakeTessellate {
            glb: lightbox_testmodels::bearing_glb(0.05),
        },
    )
    .await
    .unwrap();
    let (event, _) = stack.finish(&id, 120).await;
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert_eq!(event.result.as_ref().unwrap()["source"], "tessellated");
    let tessellated = stack.client.status(&tessellate_id).await.unwrap().unwrap();
    assert_eq!(tessellated.state, JobState::Succeeded);
    // A second render of the same STEP content finds the cache.
    let (again, _) = stack
        .submit(request(
            &model,
            vec![json!({"width": 32, "height": 32, "samples": 2})],
        ))
        .await;
    let (event, _) = stack.finish(&again, 120).await;
    assert_eq!(
        event.result.as_ref().unwrap()["source"],
        "tessellation-cache"
    );
    tessellator.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancelling_a_running_render_stops_it_and_leaves_no_outputs() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.15),
        )
        .await;
    let _heavy = stack.render_worker("render.heavy", &[]).await;
    let (id, _) = stack
        .submit(request(
            &model,
            vec![json!({"width": 1536, "height": 1536, "samples": 512})],
        ))
        .await;
    let mut events = Box::pin(stack.client.watch(&id).await.unwrap());
    while let Some(event) = events.next().await {
        if event.unwrap().state == JobState::Progress {
            break;
        }
    }
    let asked = std::time::Instant::now();
    stack.client.cancel(&id).await.unwrap();
    let (event, _) = stack.finish(&id, 60).await;
    assert_eq!(event.state, JobState::Cancelled);
    // The worker records its own `cancelled` once the renderer stops at the next sample pass.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let status = stack.client.status(&id).await.unwrap().unwrap();
            if status.state == JobState::Cancelled && status.worker != "lightbox-cli" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the worker stopped the render");
    assert!(asked.elapsed() < Duration::from_secs(60));
    assert!(stack.list("outputs").await.is_empty(), "no partial outputs");
}

#[tokio::test]
async fn a_render_past_its_deadline_is_stopped_failed_and_writes_nothing() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.15),
        )
        .await;
    let heavy = stack.render_worker("render.heavy", &[]).await;
    // Minutes of work on this machine, with a two-second deadline.
    let mut envelope = Envelope::new(
        Function::Render,
        request(
            &model,
            vec![json!({"width": 1536, "height": 1536, "samples": 512})],
        ),
    );
    envelope.deadline_ms = Some(2_000);
    stack
        .client
        .submit("render.heavy", &envelope)
        .await
        .unwrap();
    let id = envelope.id.to_string();
    let event = stack
        .client
        .wait(&id, Duration::from_secs(60), |_| {})
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", heavy.log_text()));
    assert_eq!(event.state, JobState::Failed, "{event:?}");
    assert_eq!(event.attempt, 1);
    let message = event.error.unwrap().message;
    assert!(
        message.contains("deadline of 2000 ms exceeded"),
        "{message}"
    );
    assert!(stack.list("outputs").await.is_empty(), "no partial outputs");
    // The renderer stopped: the worker takes the next job and finishes it.
    let next = Envelope::new(
        Function::Render,
        request(
            &model,
            vec![json!({"width": 64, "height": 64, "samples": 4})],
        ),
    );
    stack.client.submit("render.heavy", &next).await.unwrap();
    let next = next.id.to_string();
    let event = stack
        .client
        .wait(&next, Duration::from_secs(60), |_| {})
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", heavy.log_text()));
    assert_eq!(event.state, JobState::Succeeded, "{}", heavy.log_text());
    assert!(stack.client.dead_letters(10).await.unwrap().len() == 1);
}

/// A GLB whose first triangle index points far outside its vertices.
fn glb_with_out_of_range_index() -> Vec<u8> {
    let glb = lightbox_testmodels::bearing_glb(0.05);
    let (json, mut bin) = hostile::split_glb(&glb).unwrap();
    let accessor = json["meshes"][0]["primitives"][0]["indices"]
        .as_u64()
        .unwrap() as usize;
    let view =
        &json["bufferViews"][json["accessors"][accessor]["bufferView"].as_u64().unwrap() as usize];
    let offset = view["byteOffset"].as_u64().unwrap_or(0) as usize
        + json["accessors"][accessor]["byteOffset"]
            .as_u64()
            .unwrap_or(0) as usize;
    bin[offset..offset + 4].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    hostile::join_glb(&json, &bin)
}

#[tokio::test]
async fn broken_models_and_requests_over_limits_fail_cleanly_and_write_nothing() {
    let stack = stack().await;
    let glb = lightbox_testmodels::bearing_glb(0.05);
    let truncated = stack
        .upload("models/truncated.glb", &glb[..glb.len() / 3])
        .await;
    let bad_index = stack
        .upload("models/bad-index.glb", &glb_with_out_of_range_index())
        .await;
    let good = stack.upload("models/good.glb", &glb).await;
    let _light = stack.render_worker("render.light", &[]).await;
    let small = json!({"width": 32, "height": 32, "samples": 2});
    let mut cases: Vec<(&str, &str, RenderRequest, &str)> = vec![
        (
            "truncated GLB",
            "render.light",
            request(&truncated, vec![small.clone()]),
            "import failed",
        ),
        (
            "out-of-range index",
            "render.light",
            request(&bad_index, vec![small.clone()]),
            "out of range",
        ),
        (
            "over the size limit",
            "render.light",
            request(&good, vec![json!({"width": 2048, "height": 2048})]),
            "limit of 1024 pixels per edge",
        ),
        (
            "unknown spec field",
            "render.light",
            request(&good, vec![json!({"width": 32, "colour": "red"})]),
            "unknown field `colour`",
        ),
        (
            "missing model",
            "render.light",
            request(
                &ObjectKey::new("models/none.glb").unwrap(),
                vec![small.clone()],
            ),
            "object not found",
        ),
        (
            "no outputs",
            "render.light",
            request(&good, vec![]),
            "no outputs",
        ),
    ];
    if !render_runtime::spec::native_has_oidn() {
        // Asked for by name, a denoiser the engine lacks is an error, not a silent substitute.
        cases.push((
            "oidn not available",
            "render.light",
            request(
                &good,
                vec![json!({"width": 32, "height": 32, "samples": 2, "denoise": "oidn"})],
            ),
            "output 0: invalid denoise: oidn is not available to the native engine here",
        ));
    }
    for (name, queue, request, expected) in cases {
        let envelope = Envelope::new(Function::Render, request);
        // Sent to the light queue on purpose, so its limits apply.
        stack.client.submit(queue, &envelope).await.unwrap();
        let (event, _) = stack.finish(&envelope.id.to_string(), 60).await;
        assert_eq!(event.state, JobState::Failed, "{name}");
        assert_eq!(event.attempt, 1, "{name}: one delivery");
        let message = event.error.unwrap().message;
        assert!(
            message.contains(expected),
            "{name}: {message:?} should contain {expected:?}"
        );
    }
    assert!(
        stack.list("outputs").await.is_empty(),
        "failed jobs wrote nothing"
    );
    // The worker still serves.
    let (id, _) = stack.submit(request(&good, vec![small])).await;
    assert_eq!(stack.finish(&id, 60).await.0.state, JobState::Succeeded);
}

#[tokio::test]
async fn a_step_bearing_renders_through_the_real_tessellate_function() {
    let stack = stack().await;
    let step =
        lightbox_tessellate::samples::step_bytes(lightbox_tessellate::samples::Sample::Bearing)
            .unwrap();
    let model = stack.upload("models/bearing.step", &step).await;
    let _light = stack.render_worker("render.light", &[]).await;
    let env = function_env(&stack.nats, &stack.s3.env());
    let tessellator = FunctionProcess::spawn(
        &function_binary("lightbox-tessellate"),
        &env,
        &stack.logs,
        "tessellate",
    );
    wait_consuming(&tessellator, Duration::from_secs(30)).await;
    let (id, _) = stack
        .submit(request(
            &model,
            vec![json!({"width": 64, "height": 64, "samples": 4})],
        ))
        .await;
    let (event, events) = stack.finish(&id, 180).await;
    assert_eq!(
        event.state,
        JobState::Succeeded,
        "{event:?}\n{}",
        tessellator.log_text()
    );
    assert_eq!(event.result.as_ref().unwrap()["source"], "tessellated");
    assert!(
        events.iter().any(|e| e.state == JobState::Waiting),
        "the render waited for the tessellation"
    );
    let cached = lightbox_runtime::cache::tessellation_key(&step, &TessellationParams::default());
    assert!(
        stack.store.exists(&cached).await.unwrap(),
        "the GLB is cached for the next render"
    );
}

#[tokio::test]
async fn a_usd_master_is_rendered_directly_with_no_tessellation() {
    let stack = stack().await;
    let step = b"ISO-10303-21;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n".to_vec();
    let model = stack.upload("models/product.step", &step).await;
    let usdz = render_runtime::export_usdz(&lightbox_testmodels::bearing_scene(0.05));
    let master = stack.upload("models/product.usdz", &usdz).await;
    let _light = stack.render_worker("render.light", &[]).await;
    let mut with_master = request(
        &model,
        vec![json!({"width": 64, "height": 64, "samples": 4})],
    );
    with_master.usd_master = Some(master.clone());
    let (id, _) = stack.submit(with_master).await;
    let (event, events) = stack.finish(&id, 120).await;
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    let result = event.result.unwrap();
    assert_eq!(result["source"], "usd");
    assert_eq!(result["model"], master.as_str());
    assert!(!events.iter().any(|e| e.state == JobState::Waiting));
    let queues = stack.client.queues().await.unwrap();
    assert_eq!(
        queues
            .iter()
            .find(|q| q.queue == "tessellate")
            .unwrap()
            .pending,
        0,
        "no tessellation was requested"
    );
    let cached = lightbox_runtime::cache::tessellation_key(&step, &TessellationParams::default());
    assert!(!stack.store.exists(&cached).await.unwrap());

    // A USD model renders exactly like a GLB one.
    let usda = render_runtime::export_usda(&lightbox_testmodels::bearing_scene(0.05));
    let usd_model = stack.upload("models/bearing.usda", usda.as_bytes()).await;
    let (id, _) = stack
        .submit(request(
            &usd_model,
            vec![json!({"width": 48, "height": 48, "samples": 2})],
        ))
        .await;
    let (event, _) = stack.finish(&id, 120).await;
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert_eq!(event.result.unwrap()["source"], "usd");
}

/// Blender's Python (bpy 5.0.1 on CPython 3.11), as `.ci/run` installs it.
fn blender_python() -> String {
    std::env::var("LIGHTBOX_BLENDER_PYTHON").unwrap_or_else(|_| {
        let tools = lightbox_tests::workspace_root().join(".tools/bpy/bin/python");
        assert!(
            tools.exists(),
            "{} is missing: python3.11 -m venv .tools/bpy && .tools/bpy/bin/pip install bpy==5.0.1",
            tools.display()
        );
        tools.display().to_string()
    })
}

#[tokio::test]
async fn a_job_can_choose_the_cycles_engine_and_reuses_its_warm_worker() {
    let stack = stack().await;
    let model = stack
        .upload(
            "models/bearing.glb",
            &lightbox_testmodels::bearing_glb(0.05),
        )
        .await;
    let python = blender_python();
    let _light = stack
        .render_worker(
            "render.light",
            &[("LIGHTBOX_BLENDER_PYTHON", python.as_str())],
        )
        .await;
    let mut timings = Vec::new();
    for seed in 0..2 {
        let mut job = request(
            &model,
            vec![json!({"width": 48, "height": 48, "samples": 8, "seed": seed})],
        );
        job.engine = Some("cycles".into());
        let (id, _) = stack.submit(job).await;
        let (event, _) = stack.finish(&id, 300).await;
        assert_eq!(event.state, JobState::Succeeded, "{event:?}");
        let result = event.result.unwrap();
        assert_eq!(result["engine"], "cycles");
        let bytes = stack
            .store
            .get(&ObjectKey::new(event.outputs[0].clone()).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        timings.push(event.timings_ms["run"]);
    }
    let mut unknown = request(&model, vec![json!({"width": 32, "height": 32})]);
    unknown.engine = Some("povray".into());
    let (id, _) = stack.submit(unknown).await;
    let (event, _) = stack.finish(&id, 60).await;
    assert_eq!(event.state, JobState::Failed);
    assert!(event
        .error
        .unwrap()
        .message
        .contains("unknown engine \"povray\""));
}

#[tokio::test]
async fn an_unknown_default_engine_stops_the_worker_at_start() {
    let stack = stack().await;
    let mut env = function_env(&stack.nats, &stack.s3.env());
    env.push(("LIGHTBOX_QUEUE".into(), "render.light".into()));
    env.push(("LIGHTBOX_RENDER_ENGINE".into(), "povray".into()));
    let mut process = FunctionProcess::spawn(
        &function_binary("lightbox-render"),
        &env,
        &stack.logs,
        "render-povray",
    );
    assert_eq!(
        process.wait_exit(Duration::from_secs(30)),
        Some(false),
        "{}",
        process.log_text()
    );
    let log = process.log_text();
    assert!(
        log.contains("unknown engine \"povray\" (available: native, cycles)"),
        "{log}"
    );
}
