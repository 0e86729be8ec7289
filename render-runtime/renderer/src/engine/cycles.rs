//! Blender Cycles as a render engine: one persistent Blender process (Python with PyPI `bpy`
//! 5.0.1) per engine, driven over JSON lines on its stdin/stdout by `cycles/worker.py`.
//!
//! The worker is started once ([`CyclesEngine::start`]) and serves every job after that, so jobs
//! pay neither Blender's start-up nor, for a model rendered again, its glTF import. The Rust side
//! keeps every decision that the native engine makes: it renders the same resolved plan, frames
//! the studio from the bounds Blender reports, converts camera, lights, environment and ground
//! into Blender's Z-up world, and gets back scene-linear float frames that it tone maps and
//! encodes with the native engine's own code. Both engines therefore differ only in how they
//! trace light.
//!
//! Failure handling: a worker that dies, stops answering for [`CyclesConfig::stall_timeout`], or
//! speaks garbage fails the job with a retryable [`CyclesError`] and is killed; the next render
//! starts a fresh one. Cancellation kills the worker as well (Cycles cannot be interrupted from
//! outside its process), and the next job restarts it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{model_key, Engine, EngineError, EngineKind, Model};
use crate::encode::{self, DisplayImage};
use crate::film::Film;
use crate::math::{Aabb, Vec3};
use crate::spec::{Denoiser, ImageFormat, RenderPlan};
use crate::studio::StudioRig;
use crate::{
    turntable, EncodedImage, RenderError, RenderHooks, RenderOutput, StageTimings, UsdEncoding,
};

/// The worker script, embedded so a deployed binary needs nothing but Blender's Python.
const WORKER_SCRIPT: &str = include_str!("../../cycles/worker.py");

/// Env var naming Blender's Python (a CPython 3.11 with PyPI `bpy` 5.0.1 installed).
pub const BLENDER_PYTHON_ENV: &str = "LIGHTBOX_BLENDER_PYTHON";

/// Where to find Blender's Python when [`BLENDER_PYTHON_ENV`] is unset: the workspace's tools
/// venv (`just bench-render` installs it), then the developer machines' shared venv.
pub fn blender_python_candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os(BLENDER_PYTHON_ENV) {
        return vec![PathBuf::from(p)];
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    vec![
        workspace.join(".tools/bpy/bin/python"),
        PathBuf::from("/work/bpyvenv/bin/python"),
    ]
}

/// The first existing Blender Python among [`blender_python_candidates`].
pub fn find_blender_python() -> Option<PathBuf> {
    blender_python_candidates()
        .into_iter()
        .find(|p| p.is_file())
}

/// How to run the Cycles worker.
#[derive(Clone, Debug)]
pub struct CyclesConfig {
    /// Blender's Python; `None` fails [`CyclesEngine::start`] with [`CyclesError::NoBlenderPython`].
    pub python: Option<PathBuf>,
    /// A worker script to run instead of the embedded copy (for development).
    pub worker_script: Option<PathBuf>,
    /// Force a Cycles device (`CPU`, `CUDA`, `OPTIX`); `None` picks OptiX > CUDA > CPU.
    pub device: Option<String>,
    /// How long Blender may take to start and report ready.
    pub startup_timeout: Duration,
    /// How long the worker may stay silent during a job (no progress, no reply) before it
    /// counts as hung. Cycles reports sample progress several times a second while rendering;
    /// imports, BVH builds and denoising of very large frames are the long silent stretches.
    pub stall_timeout: Duration,
    /// Folder for the model files and frames exchanged with the worker; a fresh temporary folder
    /// when `None`.
    pub work_dir: Option<PathBuf>,
}

impl Default for CyclesConfig {
    fn default() -> Self {
        CyclesConfig {
            python: None,
            worker_script: None,
            device: None,
            startup_timeout: Duration::from_secs(120),
            stall_timeout: Duration::from_secs(600),
            work_dir: None,
        }
    }
}

impl CyclesConfig {
    /// From the environment: `LIGHTBOX_BLENDER_PYTHON` (else the default locations),
    /// `LIGHTBOX_CYCLES_WORKER`, `LIGHTBOX_CYCLES_DEVICE`, `LIGHTBOX_CYCLES_STALL_TIMEOUT_S`.
    pub fn from_env() -> CyclesConfig {
        let mut config = CyclesConfig {
            python: find_blender_python(),
            worker_script: std::env::var_os("LIGHTBOX_CYCLES_WORKER").map(PathBuf::from),
            device: std::env::var("LIGHTBOX_CYCLES_DEVICE")
                .ok()
                .filter(|d| !d.is_empty()),
            ..CyclesConfig::default()
        };
        if let Some(s) = std::env::var("LIGHTBOX_CYCLES_STALL_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            config.stall_timeout = Duration::from_secs_f64(s);
        }
        if config.python.is_none() {
            // Keep the env var's value (even when missing) so the error names what was tried.
            config.python = std::env::var_os(BLENDER_PYTHON_ENV).map(PathBuf::from);
        }
        config
    }
}

/// Why the Cycles engine failed.
#[derive(Debug, thiserror::Error)]
pub enum CyclesError {
    #[error(
        "blender python not found (tried {tried}); install it with \
         `python3.11 -m venv .tools/bpy && .tools/bpy/bin/pip install bpy==5.0.1` \
         or set LIGHTBOX_BLENDER_PYTHON"
    )]
    NoBlenderPython { tried: String },
    #[error("cannot start blender worker {python}")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blender worker failed to start: {message}; stderr: {stderr_tail}")]
    Startup {
        message: String,
        stderr_tail: String,
    },
    #[error("blender worker exited ({status}) during {stage}; stderr: {stderr_tail}")]
    Crashed {
        stage: &'static str,
        status: String,
        stderr_tail: String,
    },
    #[error(
        "blender worker silent for {after:?} during {stage}: hung, killed; stderr: {stderr_tail}"
    )]
    Timeout {
        stage: &'static str,
        after: Duration,
        stderr_tail: String,
    },
    #[error("blender worker {stage} failed: {message}")]
    Worker {
        stage: &'static str,
        message: String,
    },
    #[error("blender worker protocol error: {0}")]
    Protocol(String),
    #[error("cycles engine i/o: {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CyclesError {
    /// A crashed, hung or unreachable worker may well work on the next try (it is restarted);
    /// a model Blender cannot import or a missing Blender will not.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            CyclesError::NoBlenderPython { .. } | CyclesError::Worker { .. }
        )
    }
}

impl From<CyclesError> for RenderError {
    fn from(e: CyclesError) -> RenderError {
        RenderError::Engine(EngineError::Cycles(e))
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyclesError {
    let context = context.into();
    move |source| CyclesError::Io { context, source }
}

/// What the worker said about itself at start-up.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    pub blender: String,
    /// `CPU`, `CUDA` or `OPTIX`.
    pub device: String,
    pub devices: Vec<String>,
    /// Wall time from spawning the process to its ready message.
    pub startup: Duration,
    pub pid: u32,
}

/// Details of the last Cycles job beyond [`StageTimings`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CyclesReport {
    /// This job (re)started the worker, and how long that took.
    pub worker_started: Option<Duration>,
    pub blender: String,
    pub device: String,
    /// The model was already loaded in the worker: no import.
    pub import_cached: bool,
    /// Scene sync and BVH build before the first sample, summed over frames.
    pub sync: Duration,
    /// Writing the float frame in Blender and reading it here, summed over frames.
    pub readback: Duration,
    pub frames: u32,
}

enum Line {
    Json(Value),
    Eof,
}

/// One running Blender process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Line>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    info: WorkerInfo,
    /// The model the worker has loaded, by content key.
    model_key: Option<u64>,
    bounds: Option<Aabb>,
    next_id: u64,
}

const STDERR_TAIL_LINES: usize = 30;

impl Worker {
    fn spawn(config: &CyclesConfig, script: &Path) -> Result<Worker, CyclesError> {
        let python = match &config.python {
            Some(p) => p.clone(),
            None => {
                return Err(CyclesError::NoBlenderPython {
                    tried: blender_python_candidates()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        if !python.is_file() {
            return Err(CyclesError::NoBlenderPython {
                tried: python.display().to_string(),
            });
        }
        let t0 = Instant::now();
        let mut cmd = Command::new(&python);
        cmd.arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PYTHONUNBUFFERED", "1");
        if let Some(device) = &config.device {
            cmd.env("LIGHTBOX_CYCLES_DEVICE", device);
        }
        let mut child = cmd.spawn().map_err(|source| CyclesError::Spawn {
            python: python.display().to_string(),
            source,
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        std::thread::Builder::new()
            .name("cycles-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
            .map_err(io_err("spawning the stderr reader"))?;

        let (tx, lines) = mpsc::channel();
        let out_tail = Arc::clone(&stderr_tail);
        std::thread::Builder::new()
            .name("cycles-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v.is_object() => {
                            if tx.send(Line::Json(v)).is_err() {
                                return;
                            }
                        }
                        // Stray output on the protocol channel: keep it for error messages.
                        _ => {
                            let mut tail = out_tail.lock().unwrap_or_else(|e| e.into_inner());
                            tail.push_back(format!("(stdout) {line}"));
                        }
                    }
                }
                let _ = tx.send(Line::Eof);
            })
            .map_err(io_err("spawning the stdout reader"))?;

        let mut worker = Worker {
            child,
            stdin,
            lines,
            stderr_tail,
            info: WorkerInfo {
                blender: String::new(),
                device: String::new(),
                devices: Vec::new(),
                startup: Duration::ZERO,
                pid: 0,
            },
            model_key: None,
            bounds: None,
            next_id: 1,
        };
        let deadline = t0 + config.startup_timeout;
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match worker
                .lines
                .recv_timeout(left.max(Duration::from_millis(1)))
            {
                Ok(Line::Json(v)) if v["op"] == "ready" => break v,
                Ok(Line::Json(v)) if v["op"] == "error" => {
                    return Err(CyclesError::Startup {
                        message: v["message"].as_str().unwrap_or("unknown").to_string(),
                        stderr_tail: worker.stderr_tail(),
                    })
                }
                Ok(Line::Json(_)) => continue,
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let status = worker.exit_status();
                    return Err(CyclesError::Startup {
                        message: format!("exited before ready ({status})"),
                        stderr_tail: worker.stderr_tail(),
                    });
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(CyclesError::Startup {
                        message: format!("no ready message within {:?}", config.startup_timeout),
                        stderr_tail: worker.stderr_tail(),
                    })
                }
            }
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        worker.info = WorkerInfo {
            blender: ready["blender"].as_str().unwrap_or("?").to_string(),
            device: ready["device"].as_str().unwrap_or("CPU").to_string(),
            devices: strings(&ready["devices"]),
            startup: t0.elapsed(),
            pid: worker.child.id(),
        };
        Ok(worker)
    }

    fn stderr_tail(&self) -> String {
        // Give the reader thread a moment to collect the last lines of a dying process.
        std::thread::sleep(Duration::from_millis(50));
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn exit_status(&mut self) -> String {
        for _ in 0..40 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.to_string();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        "still running".into()
    }

    fn send(&mut self, mut request: Value) -> Result<u64, CyclesError> {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        let mut line = serde_json::to_string(&request).expect("requests serialise");
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| CyclesError::Crashed {
                stage: "send",
                status: format!("stdin closed: {e}"),
                stderr_tail: String::new(),
            })?;
        Ok(id)
    }

    /// Waits for the reply `op` to request `id`, passing progress on and polling cancellation.
    fn wait(
        &mut self,
        id: u64,
        op: &str,
        stage: &'static str,
        stall_timeout: Duration,
        hooks: &dyn RenderHooks,
        on_progress: &mut dyn FnMut(u64),
    ) -> Result<Value, RenderError> {
        let mut last_heard = Instant::now();
        loop {
            if hooks.cancelled() {
                return Err(RenderError::Cancelled);
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(Line::Json(v)) => {
                    last_heard = Instant::now();
                    if v["id"].as_u64() != Some(id) {
                        continue;
                    }
                    match v["op"].as_str() {
                        Some("progress") => on_progress(v["sample"].as_u64().unwrap_or(0)),
                        Some(o) if o == op => return Ok(v),
                        Some("error") => {
                            return Err(CyclesError::Worker {
                                stage,
                                message: v["message"].as_str().unwrap_or("unknown").into(),
                            }
                            .into())
                        }
                        other => {
                            return Err(CyclesError::Protocol(format!(
                                "unexpected reply {other:?} to {stage}"
                            ))
                            .into())
                        }
                    }
                }
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let status = self.exit_status();
                    return Err(CyclesError::Crashed {
                        stage,
                        status,
                        stderr_tail: self.stderr_tail(),
                    }
                    .into());
                }
                Err(RecvTimeoutError::Timeout) => {
                    if last_heard.elapsed() > stall_timeout {
                        return Err(CyclesError::Timeout {
                            stage,
                            after: stall_timeout,
                            stderr_tail: self.stderr_tail(),
                        }
                        .into());
                    }
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Ask politely, then make sure: a worker never outlives its engine.
        let _ = self.stdin.write_all(b"{\"op\": \"quit\"}\n");
        let _ = self.stdin.flush();
        for _ in 0..20 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary folder removed with its engine.
struct WorkDir {
    path: PathBuf,
    owned: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

static ENGINE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Blender Cycles behind the [`Engine`] trait, with a persistent worker process.
pub struct CyclesEngine {
    // Fields drop in order: the worker goes before the folder it works in.
    worker: Option<Worker>,
    config: CyclesConfig,
    work_dir: WorkDir,
    script: PathBuf,
    starts: u32,
    /// The model file last handed to the worker (written from bytes), removed when replaced.
    model_file: Option<PathBuf>,
    last_report: Option<CyclesReport>,
}

impl CyclesEngine {
    /// Starts the Blender worker and waits for its ready message.
    pub fn start(config: CyclesConfig) -> Result<CyclesEngine, RenderError> {
        let mut engine = CyclesEngine::new(config)?;
        engine.ensure_worker()?;
        Ok(engine)
    }

    /// An engine whose worker starts on the first render.
    pub fn new(config: CyclesConfig) -> Result<CyclesEngine, RenderError> {
        let work_dir = match &config.work_dir {
            Some(p) => WorkDir {
                path: p.clone(),
                owned: false,
            },
            None => WorkDir {
                path: std::env::temp_dir().join(format!(
                    "lightbox-cycles-{}-{}",
                    std::process::id(),
                    ENGINE_COUNTER.fetch_add(1, Ordering::Relaxed)
                )),
                owned: true,
            },
        };
        std::fs::create_dir_all(&work_dir.path)
            .map_err(io_err(format!("creating {}", work_dir.path.display())))?;
        let script = match &config.worker_script {
            Some(p) => p.clone(),
            None => {
                let p = work_dir.path.join("worker.py");
                std::fs::write(&p, WORKER_SCRIPT)
                    .map_err(io_err(format!("writing {}", p.display())))?;
                p
            }
        };
        Ok(CyclesEngine {
            worker: None,
            config,
            work_dir,
            script,
            starts: 0,
            model_file: None,
            last_report: None,
        })
    }

    /// How many worker processes this engine has started (1 while nothing has gone wrong).
    pub fn worker_starts(&self) -> u32 {
        self.starts
    }

    /// The running worker, if any.
    pub fn worker_info(&self) -> Option<&WorkerInfo> {
        self.worker.as_ref().map(|w| &w.info)
    }

    /// Details of the last successful render.
    pub fn last_report(&self) -> Option<&CyclesReport> {
        self.last_report.as_ref()
    }

    /// Stops the worker now; the next render starts a new one.
    pub fn stop_worker(&mut self) {
        self.worker = None;
    }

    fn ensure_worker(&mut self) -> Result<Option<Duration>, RenderError> {
        if let Some(w) = &mut self.worker {
            // A worker that died between jobs is replaced before the job starts.
            if matches!(w.child.try_wait(), Ok(None)) {
                return Ok(None);
            }
            self.worker = None;
        }
        let worker = Worker::spawn(&self.config, &self.script)?;
        self.starts += 1;
        let startup = worker.info.startup;
        self.worker = Some(worker);
        Ok(Some(startup))
    }

    /// Makes the worker hold `bytes` as its model; returns the import time (zero when cached).
    fn load_model(
        &mut self,
        model: Model<'_>,
        bytes: &[u8],
        hooks: &dyn RenderHooks,
    ) -> Result<(Duration, bool), RenderError> {
        let key = model_key(bytes);
        let worker = self.worker.as_mut().expect("worker started");
        if worker.model_key == Some(key) && worker.bounds.is_some() {
            return Ok((Duration::ZERO, true));
        }
        let (format, extension) = match UsdEncoding::sniff(bytes) {
            Some(UsdEncoding::Usda) => ("usd", "usda"),
            Some(UsdEncoding::Usdc) => ("usd", "usdc"),
            Some(UsdEncoding::Usdz) => ("usd", "usdz"),
            None if bytes.first() == Some(&b'{') => ("gltf", "gltf"),
            None => ("gltf", "glb"),
        };
        // A file already on disk with the right extension goes straight to Blender.
        let path = match model {
            Model::Path(p)
                if p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case(extension)) =>
            {
                std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
            }
            _ => {
                if let Some(old) = self.model_file.take() {
                    let _ = std::fs::remove_file(old);
                }
                let p = self
                    .work_dir
                    .path
                    .join(format!("model-{key:016x}.{extension}"));
                std::fs::write(&p, bytes).map_err(io_err(format!("writing {}", p.display())))?;
                self.model_file = Some(p.clone());
                p
            }
        };
        worker.model_key = None;
        worker.bounds = None;
        let id = worker.send(json!({
            "op": "load",
            "path": path.display().to_string(),
            "key": format!("{key:016x}"),
            "format": format,
        }))?;
        let reply = worker.wait(
            id,
            "loaded",
            "import",
            self.config.stall_timeout,
            hooks,
            &mut |_| {},
        )?;
        let bounds = parse_bounds(&reply["bounds"])
            .ok_or_else(|| CyclesError::Protocol(format!("bad bounds in {reply}")))?;
        worker.model_key = Some(key);
        worker.bounds = Some(bounds);
        let cached = reply["cached"].as_bool().unwrap_or(false);
        Ok((secs(&reply["import_s"]), cached))
    }

    fn render_inner(
        &mut self,
        model: Model<'_>,
        plan: &RenderPlan,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        let bytes = model.bytes()?;
        if hooks.cancelled() {
            return Err(RenderError::Cancelled);
        }
        let worker_started = self.ensure_worker()?;
        let (import, import_cached) = self.load_model(model, &bytes, hooks)?;
        drop(bytes);

        let stall = self.config.stall_timeout;
        let worker = self.worker.as_mut().expect("worker started");
        let bounds = worker.bounds.expect("model loaded");
        let info = worker.info.clone();
        let mut timings = StageTimings {
            import,
            ..StageTimings::default()
        };
        let mut report = CyclesReport {
            worker_started,
            blender: info.blender.clone(),
            device: info.device.clone(),
            import_cached,
            frames: plan.frame_angles.len() as u32,
            ..CyclesReport::default()
        };
        let aspect = plan.width as f32 / plan.height as f32;
        let total = plan.samples as u64 * plan.frame_angles.len() as u64;
        let mut images = Vec::with_capacity(plan.frame_angles.len());
        let mut display_frames: Vec<DisplayImage> = Vec::new();
        for (frame, &angle) in plan.frame_angles.iter().enumerate() {
            let rig = plan.studio.resolve(&bounds, aspect, angle);
            let out_path = self.work_dir.path.join(format!("frame-{frame:04}.f32"));
            let mut request = render_request(plan, &rig, &bounds, frame as u32);
            request["out"] = json!(out_path.display().to_string());
            let id = worker.send(request)?;
            let base = plan.samples as u64 * frame as u64;
            let reply = worker.wait(id, "rendered", "render", stall, hooks, &mut |sample| {
                hooks.progress(base + sample.min(plan.samples as u64), total)
            })?;
            hooks.progress(base + plan.samples as u64, total);
            timings.accel_build += secs(&reply["sync_s"]);
            timings.render += secs(&reply["render_s"]);
            timings.denoise += secs(&reply["denoise_s"]);
            report.sync += secs(&reply["sync_s"]);

            let t_read = Instant::now();
            let film = read_frame(
                &out_path,
                plan.width,
                plan.height,
                rig.ground_y.map(|_| rig.ground_opacity),
            )?;
            let _ = std::fs::remove_file(&out_path);
            let readback = secs(&reply["readback_s"]) + t_read.elapsed();
            report.readback += readback;

            let t_encode = Instant::now();
            let display =
                encode::to_display(&film, plan.tone, plan.exposure, &plan.studio.background);
            let bytes = encode::encode(&display, &plan.format)?;
            images.push(EncodedImage {
                bytes,
                format: plan.format.clone(),
                frame: plan.is_turntable.then_some(frame as u32),
            });
            if plan.is_turntable {
                display_frames.push(display);
            }
            timings.encode += t_encode.elapsed() + readback;
        }
        let animation = if plan.is_turntable {
            let t = Instant::now();
            let bytes = turntable::encode_turntable(&display_frames, plan)?;
            timings.encode += t.elapsed();
            let (quality, lossless) = match plan.format {
                ImageFormat::Webp { quality, lossless } => (quality, lossless),
                ImageFormat::Png { .. } => (90.0, false),
            };
            Some(EncodedImage {
                bytes,
                format: ImageFormat::Webp { quality, lossless },
                frame: None,
            })
        } else {
            None
        };
        self.last_report = Some(report);
        Ok(RenderOutput {
            images,
            animation,
            width: plan.width,
            height: plan.height,
            samples: plan.samples,
            sample_source: plan.sample_source,
            denoiser: cycles_denoiser(plan),
            timings,
            rays: 0,
            mrays_per_s: 0.0,
            mean_samples: plan.samples as f64,
        })
    }
}

impl Engine for CyclesEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Cycles
    }

    fn summary(&self) -> Option<String> {
        let report = self.last_report.as_ref()?;
        let started = match report.worker_started {
            Some(startup) => format!(", worker started in {:.3} s", startup.as_secs_f64()),
            None => ", warm worker".to_owned(),
        };
        Some(format!(
            "Blender {}, device {}{started}",
            report.blender, report.device
        ))
    }

    fn render(
        &mut self,
        model: Model<'_>,
        plan: &RenderPlan,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        let result = self.render_inner(model, plan, hooks);
        if let Err(e) = &result {
            // A worker in an unknown state is not reused: after a crash, hang, protocol error
            // or cancellation (Cycles cannot be interrupted) the next job starts a fresh one.
            let keep = matches!(
                e,
                RenderError::Engine(EngineError::Cycles(CyclesError::Worker { .. }))
                    | RenderError::Spec(_)
                    | RenderError::Encode(_)
            );
            if !keep {
                self.worker = None;
            }
        }
        result
    }
}

/// Cycles always denoises with its own OIDN when the plan denoises at all.
fn cycles_denoiser(plan: &RenderPlan) -> Denoiser {
    match plan.denoiser {
        Denoiser::Off => Denoiser::Off,
        Denoiser::Oidn | Denoiser::Builtin => Denoiser::Oidn,
    }
}

fn secs(v: &Value) -> Duration {
    v.as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_default()
}

/// Bounds from the worker (already in our Y-up frame): `[[min x, y, z], [max x, y, z]]`.
fn parse_bounds(v: &Value) -> Option<Aabb> {
    let corner = |c: &Value| -> Option<Vec3> {
        let a = c.as_array()?;
        let f = |i: usize| a.get(i)?.as_f64().map(|x| x as f32);
        Some(Vec3::new(f(0)?, f(1)?, f(2)?))
    };
    let pair = v.as_array()?;
    let (min, max) = (corner(pair.first()?)?, corner(pair.get(1)?)?);
    let finite = min.is_finite() && max.is_finite();
    (finite && min.x <= max.x && min.y <= max.y && min.z <= max.z).then_some(Aabb { min, max })
}

/// Our Y-up world (glTF's) to Blender's Z-up world, as Blender's glTF importer converts it.
fn to_blender(v: Vec3) -> [f32; 3] {
    [v.x, -v.z, v.y]
}

/// A 4x4 row-major matrix with the given axis columns and translation, in Blender's frame.
fn matrix(x: Vec3, y: Vec3, z: Vec3, t: Vec3) -> Value {
    let [x, y, z, t] = [x, y, z, t].map(to_blender);
    json!([
        [x[0], y[0], z[0], t[0]],
        [x[1], y[1], z[1], t[1]],
        [x[2], y[2], z[2], t[2]],
        [0.0, 0.0, 0.0, 1.0],
    ])
}

/// The shadow catcher covers the area lights' shadows of the model's box, cut at this many scene
/// radii from the box centre (a low light's shadow runs to the horizon, fading), plus a margin
/// for the soft occlusion of the environment that the native ground also catches.
const CATCHER_REACH_RADII: f32 = 3.0;
const CATCHER_MARGIN_RADII: f32 = 1.0;

/// Where the area lights' shadows of the model's box fall on the ground plane at `ground_y`:
/// every box corner projected from every light corner, as glTF (x, z) bounds, at most 200 scene
/// radii from the centre (a light corner not above a box corner casts to the horizon).
///
/// Cycles shades every camera ray that hits its shadow catcher in full (direct light with and
/// without the model, and the bounces), so a catcher under the whole frame made the engine about
/// 3x slower at equal spp than without one; the rest of the frame is background.
fn shadow_extent(rig: &StudioRig, bounds: &Aabb, ground_y: f32) -> ([f32; 2], [f32; 2]) {
    let c = bounds.center();
    let far = rig.scene_radius * 200.0;
    let (mut lo, mut hi) = ([bounds.min.x, bounds.min.z], [bounds.max.x, bounds.max.z]);
    for light in &rig.lights {
        let corners = [
            light.corner,
            light.corner + light.edge_u,
            light.corner + light.edge_v,
            light.corner + light.edge_u + light.edge_v,
        ];
        for l in corners {
            for p in bounds.corners() {
                let drop = l.y - p.y;
                let q = if drop > rig.scene_radius * 1e-3 {
                    l + (p - l) * ((l.y - ground_y) / drop)
                } else {
                    // Toward the horizon, away from the light.
                    let d = Vec3::new(p.x - l.x, 0.0, p.z - l.z);
                    p + d.normalized() * far
                };
                let qx = q.x.clamp(c.x - far, c.x + far);
                let qz = q.z.clamp(c.z - far, c.z + far);
                lo = [lo[0].min(qx), lo[1].min(qz)];
                hi = [hi[0].max(qx), hi[1].max(qz)];
            }
        }
    }
    (lo, hi)
}

/// One frame's render request: settings plus the resolved rig converted to Blender.
fn render_request(plan: &RenderPlan, rig: &StudioRig, bounds: &Aabb, frame: u32) -> Value {
    let cam = &rig.camera;
    let distance = (cam.position - bounds.center()).length();
    let camera = json!({
        // Blender cameras look down local -Z with +Y up.
        "matrix": matrix(cam.right, cam.up, -cam.forward, cam.position),
        "fov_y": 2.0 * cam.tan_half_fov_y.atan(),
        "clip_start": (rig.scene_radius * 1e-3).max(1e-6),
        "clip_end": distance + rig.scene_radius * 400.0,
    });
    let lights: Vec<Value> = rig
        .lights
        .iter()
        .map(|l| {
            let size = l.edge_u.length();
            let center = l.corner + l.edge_u * 0.5 + l.edge_v * 0.5;
            // Blender area lights emit along local -Z; pick the in-plane axes so that
            // x × y = -normal (a proper rotation).
            let (mut x, mut y) = (l.edge_u.normalized(), l.edge_v.normalized());
            if x.cross(y).dot(l.normal) > 0.0 {
                std::mem::swap(&mut x, &mut y);
            }
            // Cycles area light power P (W) gives radiance P / (pi * area).
            let peak = l.radiance.max_component().max(1e-12);
            let color = l.radiance / peak;
            json!({
                "matrix": matrix(x, y, -l.normal, center),
                "size": size,
                "color": [color.x, color.y, color.z],
                "power": peak * l.area * std::f32::consts::PI,
            })
        })
        .collect();
    let ground = rig.ground_y.map(|y| {
        let (lo, hi) = shadow_extent(rig, bounds, y);
        let c = bounds.center();
        // Blender (x, y) = glTF (x, -z).
        json!({
            "z": y,
            "center": [c.x, -c.z],
            "shadow_lo": [lo[0], -hi[1]],
            "shadow_hi": [hi[0], -lo[1]],
            "reach": rig.scene_radius * CATCHER_REACH_RADII,
            "margin": rig.scene_radius * CATCHER_MARGIN_RADII,
            "radius": rig.scene_radius,
            "opacity": rig.ground_opacity,
        })
    });
    let seed = crate::integrator::frame_seed(plan.seed, frame);
    json!({
        "op": "render",
        "width": plan.width,
        "height": plan.height,
        "samples": plan.samples,
        "seed": seed % (1 << 31),
        "max_bounces": plan.max_bounces,
        "denoise": plan.denoiser != Denoiser::Off,
        "camera": camera,
        "lights": lights,
        "environment": serde_json::to_value(&rig.environment).expect("environment serialises"),
        "ground": ground,
    })
}

/// Reads a raw float32 RGBA frame (premultiplied, rows bottom-up) into a film.
///
/// Cycles' shadow catcher has no opacity: over a transparent film it writes pure shadow as
/// black with alpha equal to the shadow's strength. Those pixels (alpha but no colour) get the
/// studio's ground opacity here, as the native engine applies it; pixels that mix model and
/// shadow (a silhouette's edge over its own shadow) keep full strength.
fn read_frame(
    path: &Path,
    width: u32,
    height: u32,
    ground_opacity: Option<f32>,
) -> Result<Film, RenderError> {
    let raw = std::fs::read(path).map_err(io_err(format!("reading {}", path.display())))?;
    let (w, h) = (width as usize, height as usize);
    if raw.len() != w * h * 16 {
        return Err(CyclesError::Protocol(format!(
            "frame {} has {} bytes, expected {}",
            path.display(),
            raw.len(),
            w * h * 16
        ))
        .into());
    }
    let mut film = Film::new(width, height);
    for (i, px) in raw.chunks_exact(16).enumerate() {
        let (x, y_up) = (i % w, i / w);
        let y = h - 1 - y_up;
        let mut c = [0.0f32; 4];
        for (k, v) in c.iter_mut().enumerate() {
            let f = f32::from_le_bytes(px[k * 4..k * 4 + 4].try_into().expect("4 bytes"));
            *v = if f.is_finite() { f } else { 0.0 };
        }
        c[3] = c[3].clamp(0.0, 1.0);
        if let Some(opacity) = ground_opacity {
            if c[3] > 0.0 && c[0].max(c[1]).max(c[2]) <= 1e-7 {
                c[3] *= opacity;
            }
        }
        film.color[y * w + x] = c;
    }
    Ok(film)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blender_frame_is_a_rotation_of_ours() {
        // glTF +Y (up) is Blender +Z; glTF +Z (toward the viewer) is Blender -Y.
        assert_eq!(to_blender(Vec3::new(0.0, 1.0, 0.0)), [0.0, 0.0, 1.0]);
        assert_eq!(to_blender(Vec3::new(0.0, 0.0, 1.0)), [0.0, -1.0, 0.0]);
        assert_eq!(to_blender(Vec3::new(1.0, 0.0, 0.0)), [1.0, 0.0, 0.0]);
    }

    #[test]
    fn shadow_catcher_covers_the_lights_shadows_and_not_the_whole_ground() {
        let bounds = Aabb {
            min: Vec3::new(-1.0, 0.0, -1.0),
            max: Vec3::new(1.0, 0.5, 1.0),
        };
        let plan = crate::RenderSpec::default().resolve().unwrap();
        let rig = plan.studio.resolve(&bounds, 1.0, 30.0);
        let (lo, hi) = shadow_extent(&rig, &bounds, bounds.min.y);
        // Every box corner's shadow from every light corner lies inside, where it is finite.
        for light in &rig.lights {
            for p in bounds.corners() {
                let l = light.corner + light.edge_u * 0.5 + light.edge_v * 0.5;
                if l.y <= p.y {
                    continue;
                }
                let q = l + (p - l) * ((l.y - bounds.min.y) / (l.y - p.y));
                assert!(
                    (lo[0]..=hi[0]).contains(&q.x) && (lo[1]..=hi[1]).contains(&q.z),
                    "{q:?} outside {lo:?}..{hi:?}"
                );
            }
        }
        // The request cuts it at the reach: a few radii, not the old 400.
        let req = render_request(&plan, &rig, &bounds, 0);
        let reach = req["ground"]["reach"].as_f64().unwrap() as f32;
        assert!(reach <= rig.scene_radius * 4.0, "{reach}");
        assert!(reach >= rig.scene_radius * 2.0, "{reach}");
    }

    #[test]
    fn light_axes_are_right_handed_and_emit_toward_the_model() {
        let bounds = Aabb {
            min: Vec3::new(-1.0, 0.0, -1.0),
            max: Vec3::new(1.0, 1.0, 1.0),
        };
        let plan = crate::RenderSpec::default().resolve().unwrap();
        let rig = plan.studio.resolve(&bounds, 1.0, 30.0);
        let req = render_request(&plan, &rig, &bounds, 0);
        for light in req["lights"].as_array().unwrap() {
            let m: Vec<Vec<f64>> = serde_json::from_value(light["matrix"].clone()).unwrap();
            let col = |j: usize| [m[0][j], m[1][j], m[2][j]];
            let (x, y, z) = (col(0), col(1), col(2));
            let cross = [
                x[1] * y[2] - x[2] * y[1],
                x[2] * y[0] - x[0] * y[2],
                x[0] * y[1] - x[1] * y[0],
            ];
            for k in 0..3 {
                assert!((cross[k] - z[k]).abs() < 1e-4, "{cross:?} vs {z:?}");
            }
            // Emission (-Z) points from the light toward the model centre.
            let t = col(3);
            let c = to_blender(bounds.center());
            let to_center = [c[0] as f64 - t[0], c[1] as f64 - t[1], c[2] as f64 - t[2]];
            let dot: f64 = (0..3).map(|k| -z[k] * to_center[k]).sum();
            assert!(dot > 0.0);
        }
    }

    #[test]
    fn missing_python_is_a_clear_error() {
        let config = CyclesConfig {
            python: Some(PathBuf::from("/nonexistent/blender/python")),
            ..CyclesConfig::default()
        };
        let err = CyclesEngine::start(config).err().expect("must fail");
        let msg = format!("{:#}", lightbox_protocol::error::error_chain(&err));
        assert!(msg.contains("/nonexistent/blender/python"), "{msg}");
        assert!(msg.contains("bpy==5.0.1"), "{msg}");
    }
}
