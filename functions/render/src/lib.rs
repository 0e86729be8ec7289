//! The render function: one model in (GLB, USD master, or STEP through the tessellation cache),
//! one or more images out (stills, thumbnails, turntables), imported once per job.
//!
//! The pure core is [`render_model`] (bytes and specs in, encoded images out); the queue handler
//! [`RenderHandler`] adds input resolution, limits, progress, cancellation and uploads.
//!
//! ```no_run
//! use lightbox_render::{render_model, ModelKind, RenderLimits};
//! use render_runtime::{NoHooks, RenderSpec};
//!
//! let glb = lightbox_testmodels::bearing_glb(0.05);
//! let spec = RenderSpec { width: 64, height: 64, samples: Some(4), ..RenderSpec::default() };
//! let rendered = render_model(&glb, ModelKind::Glb, &[spec], &RenderLimits::default(), &NoHooks).unwrap();
//! assert_eq!(rendered.outputs.len(), 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use render_runtime::{ImportLimits, PreparedScene, RenderHooks, RenderOutput, RenderSpec};
use serde::Serialize;
use sha2::{Digest, Sha256};
use lightbox_runtime::config::env_parse;
use lightbox_runtime::error::error_chain;
use lightbox_runtime::job::{Continuation, Envelope};
use lightbox_runtime::requests::{RenderOutputRequest, RenderRequest, TessellationParams};
use lightbox_runtime::worker::{Handler, Job, JobContext, Outcome};
use lightbox_runtime::{Function, JobError, ObjectKey};
use tracing::info;

/// Per-queue limits: a request over one fails permanently with a message naming the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderLimits {
    /// Largest image edge in pixels.
    pub max_edge: u32,
    /// Most samples per pixel.
    pub max_samples: u32,
    /// Most turntable frames (0 refuses turntables).
    pub max_frames: u32,
    /// Most outputs per job.
    pub max_outputs: usize,
    /// Largest model object in bytes.
    pub max_model_bytes: u64,
    /// Scene size limits for import.
    pub import: ImportLimits,
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            max_edge: 8192,
            max_samples: 8192,
            max_frames: 360,
            max_outputs: 16,
            max_model_bytes: 1 << 30,
            import: ImportLimits::default(),
        }
    }
}

impl RenderLimits {
    /// Defaults for a queue (`render.light` keeps thumbnails small and refuses turntables), then
    /// `LIGHTBOX_RENDER_MAX_EDGE`, `_MAX_SAMPLES`, `_MAX_FRAMES`, `_MAX_OUTPUTS`, `_MAX_MODEL_BYTES`.
    pub fn from_env(queue: &str) -> Self {
        let base = Self::for_queue(queue);
        Self {
            max_edge: env_parse("LIGHTBOX_RENDER_MAX_EDGE", base.max_edge),
            max_samples: env_parse("LIGHTBOX_RENDER_MAX_SAMPLES", base.max_samples),
            max_frames: env_parse("LIGHTBOX_RENDER_MAX_FRAMES", base.max_frames),
            max_outputs: env_parse("LIGHTBOX_RENDER_MAX_OUTPUTS", base.max_outputs),
            max_model_bytes: env_parse("LIGHTBOX_RENDER_MAX_MODEL_BYTES", base.max_model_bytes),
            import: ImportLimits {
                memory_budget: env_parse::<u64>("LIGHTBOX_RENDER_MEMORY_MB", 0)
                    .checked_mul(1 << 20)
                    .filter(|&b| b > 0)
                    .unwrap_or_else(default_memory_budget),
                ..base.import
            },
        }
    }

    /// The built-in limits of a queue.
    pub fn for_queue(queue: &str) -> Self {
        match queue {
            "render.light" => Self {
                max_edge: 1024,
                max_samples: 1024,
                max_frames: 0,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// Checks one output's resolved plan against the limits.
    pub fn check(&self, index: usize, spec: &RenderSpec) -> Result<(), String> {
        let plan = spec
            .resolve()
            .map_err(|err| format!("output {index}: {}", error_chain(&err)))?;
        if plan.width.max(plan.height) > self.max_edge {
            return Err(format!(
                "output {index}: {}x{} is over this queue's limit of {} pixels per edge (LIGHTBOX_RENDER_MAX_EDGE)",
                plan.width, plan.height, self.max_edge
            ));
        }
        if plan.samples > self.max_samples {
            return Err(format!(
                "output {index}: {} samples is over this queue's limit of {} (LIGHTBOX_RENDER_MAX_SAMPLES)",
                plan.samples, self.max_samples
            ));
        }
        if plan.is_turntable && plan.frame_angles.len() as u32 > self.max_frames {
            return Err(format!(
                "output {index}: a {}-frame turntable is over this queue's limit of {} frames (LIGHTBOX_RENDER_MAX_FRAMES; turntables belong on render.heavy)",
                plan.frame_angles.len(),
                self.max_frames
            ));
        }
        Ok(())
    }
}

/// The memory budget when `LIGHTBOX_RENDER_MEMORY_MB` is not set: half of what this host (or
/// its cgroup, in a container) has, so that a model's scene and BVH leave room for the film,
/// the encoder and a second job; 8 GiB where neither can be read.
pub fn default_memory_budget() -> u64 {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let host = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    match (cgroup, host) {
        (Some(c), Some(h)) => c.min(h) / 2,
        (Some(m), None) | (None, Some(m)) => m / 2,
        (None, None) => render_runtime::DEFAULT_MEMORY_BUDGET,
    }
}

/// The kind of model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Glb,
    Usd,
    Step,
}

impl ModelKind {
    /// From a key's extension.
    pub fn of(key: &ObjectKey) -> Option<Self> {
        match key.extension()?.as_str() {
            "glb" | "gltf" => Some(Self::Glb),
            "usd" | "usda" | "usdc" | "usdz" => Some(Self::Usd),
            "step" | "stp" => Some(Self::Step),
            _ => None,
        }
    }
}

/// How the renderable scene was obtained; recorded in the result and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePath {
    /// A USD master, rendered directly.
    Usd,
    /// A GLB.
    Glb,
    /// A STEP file whose GLB was already in the tessellation cache.
    TessellationCache,
    /// A STEP file tessellated for this job (through a tessellate job and a continuation).
    Tessellated,
}

impl SourcePath {
    pub fn as_str(self) -> &'static str {
        match self {
            SourcePath::Usd => "usd",
            SourcePath::Glb => "glb",
            SourcePath::TessellationCache => "tessellation-cache",
            SourcePath::Tessellated => "tessellated",
        }
    }
}

/// What [`render_model`] produced.
pub struct Rendered {
    pub outputs: Vec<RenderOutput>,
    pub import: Duration,
    pub accel_build: Duration,
}

/// Why a render failed, with its retry class.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    #[error("{0}")]
    Invalid(String),
    #[error("render cancelled")]
    Cancelled,
    #[error("{0}")]
    Internal(String),
}

impl From<RenderFailure> for JobError {
    fn from(failure: RenderFailure) -> Self {
        match failure {
            RenderFailure::Invalid(message) => JobError::permanent(message),
            RenderFailure::Cancelled => JobError::Cancelled,
            RenderFailure::Internal(message) => JobError::retryable(message),
        }
    }
}

fn classify(err: render_runtime::RenderError) -> RenderFailure {
    if matches!(err, render_runtime::RenderError::Cancelled) {
        return RenderFailure::Cancelled;
    }
    let mut message = error_chain(&err);
    if message.contains("over the memory budget") {
        message.push_str(" (LIGHTBOX_RENDER_MEMORY_MB)");
    }
    if err.is_retryable() {
        RenderFailure::Internal(message)
    } else {
        RenderFailure::Invalid(message)
    }
}

/// Imports a model once and renders every spec of it. Blocking (runs on every core).
pub fn render_model(
    bytes: &[u8],
    kind: ModelKind,
    specs: &[RenderSpec],
    limits: &RenderLimits,
    hooks: &dyn RenderHooks,
) -> Result<Rendered, RenderFailure> {
    for (index, spec) in specs.iter().enumerate() {
        limits.check(index, spec).map_err(RenderFailure::Invalid)?;
    }
    let prepared = match kind {
        ModelKind::Glb => PreparedScene::from_glb(bytes, &limits.import).map_err(classify)?,
        ModelKind::Usd => PreparedScene::from_usd(bytes, &limits.import).map_err(classify)?,
        ModelKind::Step => {
            return Err(RenderFailure::Invalid(
                "a STEP model must be tessellated to GLB before rendering".into(),
            ))
        }
    };
    let mut outputs = Vec::with_capacity(specs.len());
    for spec in specs {
        outputs.push(prepared.render(spec, hooks).map_err(classify)?);
    }
    Ok(Rendered {
        outputs,
        import: prepared.import_time(),
        accel_build: prepared.accel_build_time(),
    })
}

/// Parses a job's outputs into render specs, refusing unknown fields with the output's index.
pub fn parse_specs(
    outputs: &[RenderOutputRequest],
    limits: &RenderLimits,
) -> Result<Vec<RenderSpec>, JobError> {
    if outputs.is_empty() {
        return Err(JobError::permanent("the job asks for no outputs"));
    }
    if outputs.len() > limits.max_outputs {
        return Err(JobError::permanent(format!(
            "{} outputs is over the limit of {} per job (LIGHTBOX_RENDER_MAX_OUTPUTS)",
            outputs.len(),
            limits.max_outputs
        )));
    }
    outputs
        .iter()
        .enumerate()
        .map(|(index, output)| {
            let spec: RenderSpec = serde_json::from_value(serde_json::Value::Object(
                output.spec.clone(),
            ))
            .map_err(|err| {
                JobError::permanent(format!("output {index}: invalid render spec: {err}"))
            })?;
            limits.check(index, &spec).map_err(JobError::permanent)?;
            Ok(spec)
        })
        .collect()
}

/// The key of one output: given by the job, or derived from the model's bytes, the spec and the
/// engine, so a redelivered job overwrites its own outputs.
pub fn output_key(
    model: &[u8],
    spec: &RenderSpec,
    engine: &str,
    given: Option<&ObjectKey>,
) -> ObjectKey {
    if let Some(key) = given {
        return key.clone();
    }
    let mut hasher = Sha256::new();
    hasher.update(model);
    hasher.update(serde_json::to_vec(spec).expect("spec serialises"));
    hasher.update(engine.as_bytes());
    let digest = hex::encode(&hasher.finalize()[..16]);
    let extension = if spec.turntable.is_some() {
        "webp"
    } else {
        spec.format.extension()
    };
    ObjectKey::new(format!("outputs/render/{digest}.{extension}")).expect("derived key is valid")
}

/// The key of turntable frame `index` beside its animation: `<stem>/frame-0001.<ext>`.
pub fn frame_key(animation: &ObjectKey, index: u32, extension: &str) -> ObjectKey {
    let stem = animation
        .as_str()
        .rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(animation.as_str());
    ObjectKey::new(format!("{stem}/frame-{:04}.{extension}", index + 1))
        .expect("frame key is valid")
}

/// Progress across all outputs of a job, with an estimate of the time left.
struct JobHooks {
    ctx: JobContext,
    base: AtomicU64,
    total: u64,
    started: Instant,
}

impl RenderHooks for JobHooks {
    fn progress(&self, done: u64, _total: u64) {
        let done = self.base.load(Ordering::Relaxed) + done;
        let fraction = done as f64 / self.total.max(1) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = (fraction > 0.0).then(|| ((elapsed / fraction - elapsed) * 1000.0) as u64);
        self.ctx.progress(done, self.total, eta, "samples");
    }

    fn cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

/// The queue handler for `render.light` and `render.heavy`.
pub struct RenderHandler {
    pub limits: RenderLimits,
    /// Engine for jobs that name none (`LIGHTBOX_RENDER_ENGINE`, default `native`).
    pub default_engine: String,
    /// The warm Blender worker of the `cycles` engine, started by the first Cycles job and
    /// reused by the next ones (restarted by the engine after a crash or hang).
    pub cycles: Arc<Mutex<Option<render_runtime::CyclesEngine>>>,
}

impl RenderHandler {
    pub fn new(limits: RenderLimits) -> Self {
        Self {
            limits,
            default_engine: lightbox_runtime::config::env_or("LIGHTBOX_RENDER_ENGINE", "native"),
            cycles: Arc::new(Mutex::new(None)),
        }
    }
}

/// Renders every spec of a model with the Cycles engine (one warm Blender process per instance).
pub fn render_model_cycles(
    cycles: &Mutex<Option<render_runtime::CyclesEngine>>,
    bytes: &[u8],
    specs: &[RenderSpec],
    limits: &RenderLimits,
    hooks: &dyn RenderHooks,
) -> Result<Rendered, RenderFailure> {
    use render_runtime::Engine as _;
    for (index, spec) in specs.iter().enumerate() {
        limits.check(index, spec).map_err(RenderFailure::Invalid)?;
    }
    let mut guard = cycles
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        *guard = Some(
            render_runtime::CyclesEngine::start(render_runtime::CyclesConfig::from_env())
                .map_err(classify)?,
        );
    }
    let engine = guard.as_mut().expect("started");
    let mut outputs = Vec::with_capacity(specs.len());
    for spec in specs {
        outputs.push(
            engine
                .render(render_runtime::Model::Bytes(bytes), spec, hooks)
                .map_err(classify)?,
        );
    }
    let import = outputs
        .first()
        .map(|o| o.timings.import)
        .unwrap_or_default();
    let accel_build = outputs
        .first()
        .map(|o| o.timings.accel_build)
        .unwrap_or_default();
    Ok(Rendered {
        outputs,
        import,
        accel_build,
    })
}

impl Handler for RenderHandler {
    type Request = RenderRequest;
    const FUNCTION: Function = Function::Render;
    const DEFAULT_QUEUE: &'static str = "render.light";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<RenderRequest>) -> Result<Outcome, JobError> {
        let Job { request, ctx } = job;
        let specs = parse_specs(&request.outputs, &self.limits)?;
        let engine = request
            .engine
            .clone()
            .unwrap_or_else(|| self.default_engine.clone());
        if engine != "native" && engine != "cycles" {
            return Err(JobError::permanent(format!(
                "unknown engine {engine:?} (available: native, cycles)"
            )));
        }
        for output in request.outputs.iter().filter_map(|o| o.output.as_ref()) {
            ctx.store.check(output)?;
        }

        // Input resolution: a USD master first, then the model itself; STEP goes through the
        // tessellation cache or a tessellate job that continues this one.
        let fetch_start = Instant::now();
        let (source, key, kind) = resolve_source(&ctx, &request).await?;
        let (source, key, kind) = match source {
            Resolved::Ready(source) => (source, key, kind),
            Resolved::Waiting(tessellate_id) => {
                return Ok(Outcome {
                    result: serde_json::json!({"source": "tessellating", "tessellate_job": tessellate_id}),
                    waiting_for: Some(tessellate_id),
                    ..Outcome::default()
                })
            }
        };
        let model = ctx
            .store
            .get(&key, Some(self.limits.max_model_bytes))
            .await?;
        let fetch_ms = fetch_start.elapsed().as_secs_f64() * 1000.0;
        info!(source = source.as_str(), model = %key, bytes = model.len(), "rendering");

        let total: u64 = specs
            .iter()
            .map(|spec| {
                let plan = spec.resolve().expect("checked");
                plan.samples as u64 * plan.frame_angles.len() as u64
            })
            .sum();
        let hooks = JobHooks {
            ctx: ctx.clone(),
            base: AtomicU64::new(0),
            total,
            started: Instant::now(),
        };
        let limits = self.limits.clone();
        let specs_for_render = specs.clone();
        let model_for_render = model.clone();
        let cycles = (engine == "cycles").then(|| self.cycles.clone());
        let rendered = tokio::task::spawn_blocking(move || {
            let outcome = match cycles {
                Some(cycles) => render_model_cycles(
                    &cycles,
                    &model_for_render,
                    &specs_for_render,
                    &limits,
                    &hooks,
                ),
                None => render_model(&model_for_render, kind, &specs_for_render, &limits, &hooks),
            };
            drop(hooks);
            outcome
        })
        .await
        .map_err(|err| JobError::permanent(format!("renderer crashed: {err}")))??;
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }

        // Upload everything, or nothing: a failure part-way removes what was written.
        let upload_start = Instant::now();
        let mut written: Vec<ObjectKey> = Vec::new();
        let mut results = Vec::new();
        let mut timings = render_runtime::StageTimings::default();
        let mut rays_per_s = Vec::new();
        for ((spec, output), request_output) in
            specs.iter().zip(&rendered.outputs).zip(&request.outputs)
        {
            let key = output_key(&model, spec, &engine, request_output.output.as_ref());
            timings.render += output.timings.render;
            timings.denoise += output.timings.denoise;
            timings.encode += output.timings.encode;
            rays_per_s.push(output.mrays_per_s);
            let mut frame_keys = Vec::new();
            let main_bytes = if let Some(animation) = &output.animation {
                for image in &output.images {
                    let frame = frame_key(&key, image.frame.unwrap_or(0), image.format.extension());
                    put_or_undo(&ctx, &frame, &image.bytes, &mut written).await?;
                    frame_keys.push(frame.to_string());
                }
                &animation.bytes
            } else {
                &output.images[0].bytes
            };
            put_or_undo(&ctx, &key, main_bytes, &mut written).await?;
            results.push(serde_json::json!({
                "key": key.as_str(),
                "bytes": main_bytes.len(),
                "width": output.width,
                "height": output.height,
                "samples": output.samples,
                "sample_source": output.sample_source,
                "denoiser": output.denoiser.as_str(),
                "frames": frame_keys.len().max(1),
                "frame_keys": frame_keys,
                "mrays_per_s": output.mrays_per_s,
            }));
        }
        if ctx.is_cancelled() {
            undo(&ctx, &written).await;
            return Err(JobError::Cancelled);
        }
        let upload_ms = upload_start.elapsed().as_secs_f64() * 1000.0;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok(Outcome {
            outputs: results
                .iter()
                .filter_map(|r| r["key"].as_str().map(str::to_owned))
                .collect(),
            result: serde_json::json!({
                "source": source.as_str(),
                "engine": engine,
                "model": key.as_str(),
                "outputs": results,
            }),
            timings_ms: vec![
                ("fetch".into(), fetch_ms),
                ("import".into(), ms(rendered.import)),
                ("accel_build".into(), ms(rendered.accel_build)),
                ("render".into(), ms(timings.render)),
                ("denoise".into(), ms(timings.denoise)),
                ("encode".into(), ms(timings.encode)),
                ("upload".into(), upload_ms),
            ],
            waiting_for: None,
        })
    }
}

async fn put_or_undo(
    ctx: &JobContext,
    key: &ObjectKey,
    bytes: &[u8],
    written: &mut Vec<ObjectKey>,
) -> Result<(), JobError> {
    if let Err(err) = ctx.store.put(key, Bytes::copy_from_slice(bytes)).await {
        undo(ctx, written).await;
        return Err(err);
    }
    written.push(key.clone());
    Ok(())
}

async fn undo(ctx: &JobContext, written: &[ObjectKey]) {
    for key in written {
        let _ = ctx.store.delete(key).await;
    }
}

enum Resolved {
    Ready(SourcePath),
    Waiting(String),
}

async fn resolve_source(
    ctx: &JobContext,
    request: &RenderRequest,
) -> Result<(Resolved, ObjectKey, ModelKind), JobError> {
    if let Some(master) = &request.usd_master {
        if ModelKind::of(master) != Some(ModelKind::Usd) {
            return Err(JobError::permanent(format!(
                "usd_master {master} is not a .usd, .usda, .usdc or .usdz file"
            )));
        }
        if ctx.store.exists(master).await? {
            return Ok((
                Resolved::Ready(SourcePath::Usd),
                master.clone(),
                ModelKind::Usd,
            ));
        }
    }
    let kind = ModelKind::of(&request.model).ok_or_else(|| {
        JobError::permanent(format!(
            "model {} is not a .glb, .usd(a/c/z) or .step/.stp file",
            request.model
        ))
    })?;
    match kind {
        ModelKind::Glb => Ok((
            Resolved::Ready(SourcePath::Glb),
            request.model.clone(),
            kind,
        )),
        ModelKind::Usd => Ok((
            Resolved::Ready(SourcePath::Usd),
            request.model.clone(),
            kind,
        )),
        ModelKind::Step => {
            let step = ctx.store.get(&request.model, None).await?;
            let params = request.tessellation.unwrap_or_default();
            let cached = lightbox_runtime::cache::tessellation_key(&step, &params);
            if ctx.store.exists(&cached).await? {
                let source = if request.tessellated_by.is_some() {
                    SourcePath::Tessellated
                } else {
                    SourcePath::TessellationCache
                };
                return Ok((Resolved::Ready(source), cached, ModelKind::Glb));
            }
            if let Some(by) = &request.tessellated_by {
                return Err(JobError::permanent(format!(
                    "tessellate job {by} finished but wrote no GLB at {cached}"
                )));
            }
            let id = request_tessellation(ctx, request, &params, &cached).await?;
            Ok((Resolved::Waiting(id), cached, ModelKind::Glb))
        }
    }
}

/// Publishes a tessellate job that writes the cached GLB and then continues this render job.
async fn request_tessellation(
    ctx: &JobContext,
    request: &RenderRequest,
    params: &TessellationParams,
    cached: &ObjectKey,
) -> Result<String, JobError> {
    let mut continued = (*ctx.envelope).clone();
    let mut continued_request = request.clone();
    continued_request.tessellated_by = Some(format!("tessellate-for-{}", ctx.id));
    continued.request = serde_json::to_value(&continued_request)
        .map_err(|err| JobError::permanent(err.to_string()))?;
    let tessellate_request = serde_json::json!({
        "input": request.model,
        "output": cached,
        "linear_deflection": params.linear_deflection,
        "angular_deflection": params.angular_deflection,
    });
    let mut envelope = Envelope::new(Function::Tessellate, tessellate_request);
    envelope.then = Some(Continuation {
        subject: ctx.queue.clone(),
        job: serde_json::to_value(&continued)
            .map_err(|err| JobError::permanent(err.to_string()))?,
    });
    let id = envelope.id.to_string();
    let mut headers = async_nats::HeaderMap::new();
    // One tessellation request per render job, however often this job is redelivered.
    headers.insert("Nats-Msg-Id", format!("tessellate-for-{}", ctx.id).as_str());
    headers.insert("traceparent", ctx.trace.child().header().as_str());
    let js = async_nats::jetstream::new(ctx.client.clone());
    js.publish_with_headers("tessellate", headers, Bytes::from(envelope.to_json()))
        .await
        .map_err(|err| JobError::retryable(format!("could not request tessellation: {err}")))?
        .await
        .map_err(|err| JobError::retryable(format!("could not request tessellation: {err}")))?;
    info!(tessellate_job = %id, model = %request.model, "requested tessellation; this job continues when it is done");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(width: u32, height: u32) -> RenderSpec {
        RenderSpec {
            width,
            height,
            ..RenderSpec::default()
        }
    }

    #[test]
    fn queue_limits_name_the_limit() {
        let light = RenderLimits::for_queue("render.light");
        assert!(light.check(0, &spec(1024, 1024)).is_ok());
        let err = light.check(0, &spec(2048, 2048)).unwrap_err();
        assert!(
            err.contains("limit of 1024 pixels per edge")
                && err.contains("LIGHTBOX_RENDER_MAX_EDGE"),
            "{err}"
        );
        let mut many = spec(64, 64);
        many.samples = Some(5000);
        assert!(light
            .check(1, &many)
            .unwrap_err()
            .contains("output 1: 5000 samples"));
        let mut turntable = spec(64, 64);
        turntable.turntable = Some(render_runtime::TurntableSpec::default());
        assert!(light
            .check(0, &turntable)
            .unwrap_err()
            .contains("turntables belong on render.heavy"));
        assert!(RenderLimits::for_queue("render.heavy")
            .check(0, &turntable)
            .is_ok());
    }

    #[test]
    fn output_keys_are_deterministic() {
        let a = output_key(b"model", &spec(64, 64), "native", None);
        assert_eq!(a, output_key(b"model", &spec(64, 64), "native", None));
        assert_ne!(a, output_key(b"model", &spec(65, 64), "native", None));
        assert_ne!(a, output_key(b"other", &spec(64, 64), "native", None));
        let given = ObjectKey::new("outputs/mine.png").unwrap();
        assert_eq!(
            output_key(b"model", &spec(64, 64), "native", Some(&given)),
            given
        );
        assert_eq!(
            frame_key(&ObjectKey::new("outputs/t.webp").unwrap(), 0, "png").as_str(),
            "outputs/t/frame-0001.png"
        );
    }

    #[test]
    fn model_kinds_come_from_extensions() {
        let kind = |k: &str| ModelKind::of(&ObjectKey::new(k).unwrap());
        assert_eq!(kind("models/a.GLB"), Some(ModelKind::Glb));
        assert_eq!(kind("models/a.usdz"), Some(ModelKind::Usd));
        assert_eq!(kind("models/a.stp"), Some(ModelKind::Step));
        assert_eq!(kind("models/a.obj"), None);
    }

    #[test]
    fn renders_a_small_bearing_and_refuses_broken_models() {
        let glb = lightbox_testmodels::bearing_glb(0.05);
        let mut small = spec(32, 32);
        small.samples = Some(2);
        let rendered = render_model(
            &glb,
            ModelKind::Glb,
            &[small.clone(), small.clone()],
            &RenderLimits::default(),
            &render_runtime::NoHooks,
        )
        .unwrap();
        assert_eq!(rendered.outputs.len(), 2);
        let truncated = &glb[..glb.len() / 2];
        let err = render_model(
            truncated,
            ModelKind::Glb,
            &[small],
            &RenderLimits::default(),
            &render_runtime::NoHooks,
        )
        .err()
        .unwrap();
        assert!(matches!(err, RenderFailure::Invalid(_)), "{err}");
    }

    #[test]
    fn a_model_over_the_memory_budget_fails_naming_the_setting() {
        let glb = lightbox_testmodels::hostile::cube_claiming_triangles(2_000_000);
        let mut limits = RenderLimits::default();
        limits.import.memory_budget = 64 << 20;
        let err = render_model(
            &glb,
            ModelKind::Glb,
            &[spec(32, 32)],
            &limits,
            &render_runtime::NoHooks,
        )
        .err()
        .unwrap();
        let RenderFailure::Invalid(message) = err else {
            panic!("{err}")
        };
        assert!(
            message.contains("over the memory budget of 64 MiB (LIGHTBOX_RENDER_MEMORY_MB)"),
            "{message}"
        );
        assert!(default_memory_budget() >= 64 << 20);
    }
}
