//! Lightbox's renderer as a library: GLB import, an Embree-accelerated path tracer, a studio
//! setup, the sample policy, denoising, turntables and image encoding.
//!
//! The whole pipeline is [`render_glb`]: import → acceleration structure → studio (camera and
//! lights framed from the bounds) → path-traced sample passes → denoise → tone map and encode.
//! A job that renders several outputs of one model imports once with [`PreparedScene`] and
//! calls [`PreparedScene::render`] per [`RenderSpec`].
//!
//! Architecture invariant: this crate knows nothing of NATS, S3 or tokio.
//!
//! ```
//! use render_runtime::{render_glb, NoHooks, RenderSpec};
//!
//! let glb = lightbox_testmodels::bearing_glb(0.05);
//! let spec = RenderSpec { width: 32, height: 32, samples: Some(2), ..RenderSpec::default() };
//! let out = render_glb(&glb, &spec, &NoHooks).unwrap();
//! assert_eq!(&out.images[0].bytes[1..4], b"PNG");
//! println!("render took {:?} at {:.1} Mrays/s", out.timings.render, out.mrays_per_s);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

pub mod accel;
pub mod bsdf;
pub mod camera;
pub mod denoise;
pub mod encode;
pub mod engine;
pub mod film;
pub mod integrator;
pub mod sampler;
pub mod spec;
pub mod studio;
pub mod turntable;

/// The scene model and model I/O live in their own crate (no Embree there); re-exported so
/// renderer code and callers can keep one path.
pub use lightbox_scene as scene;
pub use lightbox_scene::math;

use std::time::{Duration, Instant};

use serde::Serialize;

pub use accel::{AccelError, EmbreeAccel};
pub use encode::EncodeError;
pub use engine::{
    CyclesConfig, CyclesEngine, Engine, EngineError, EngineKind, Model, NativeEngine,
};
pub use film::Film;
pub use integrator::{Cancelled, NoHooks, RenderHooks};
pub use scene::budget::{MemoryEstimate, OverBudget};
pub use scene::gltf::{
    import_gltf, import_gltf_with_limits, ImportError, ImportLimits, DEFAULT_MEMORY_BUDGET,
};
pub use scene::usd::{import_usd, import_usd_with_limits, UsdEncoding, UsdImportError};
pub use scene::usd_write::{export_usda, export_usdz, UsdInstancing, UsdWriteOptions};
pub use scene::Scene;
pub use spec::{
    policy_samples, DenoiseRequest, Denoiser, ImageFormat, RenderPlan, RenderSpec, SpecError,
    ToneMap, TurntableSpec,
};
pub use studio::Studio;

use integrator::{frame_seed, FrameSettings, Integrator};

/// Everything that can stop a render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("import failed")]
    Import(#[from] ImportError),
    #[error("usd import failed")]
    UsdImport(#[from] UsdImportError),
    #[error("acceleration structure build failed")]
    Accel(#[from] AccelError),
    #[error("invalid render spec")]
    Spec(#[from] SpecError),
    #[error("render cancelled")]
    Cancelled,
    #[error("encoding failed")]
    Encode(#[from] EncodeError),
    #[error("denoising failed: {0}")]
    Denoise(String),
    #[error("render engine failed")]
    Engine(#[from] EngineError),
}

impl RenderError {
    /// Whether retrying the same job could succeed. Bad input and bad specs never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            RenderError::Accel(_) | RenderError::Denoise(_) => true,
            RenderError::Engine(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The memory-budget refusal inside this error, if that is what stopped the import.
    pub fn over_budget(&self) -> Option<&OverBudget> {
        match self {
            RenderError::Import(ImportError::OverBudget(over))
            | RenderError::UsdImport(UsdImportError::OverBudget(over)) => Some(over),
            _ => None,
        }
    }
}

/// Wall-clock time per pipeline stage. Turntable stages sum over frames.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageTimings {
    pub import: Duration,
    pub accel_build: Duration,
    pub render: Duration,
    pub denoise: Duration,
    pub encode: Duration,
}

/// One encoded image.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedImage {
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    /// Turntable frame index, `None` for stills and animations.
    pub frame: Option<u32>,
}

/// The result of a render: encoded images plus what it took.
#[derive(Clone, Debug)]
pub struct RenderOutput {
    /// The still, or every turntable frame in order.
    pub images: Vec<EncodedImage>,
    /// For turntables: the looping animated WebP.
    pub animation: Option<EncodedImage>,
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    pub sample_source: spec::SampleSource,
    pub denoiser: Denoiser,
    pub timings: StageTimings,
    /// Rays traced (camera, bounce and shadow rays), summed over frames.
    pub rays: u64,
    pub mrays_per_s: f64,
    /// Average samples per pixel actually traced, over frames: `samples`, or less where
    /// adaptive sampling stopped converged pixels early.
    pub mean_samples: f64,
}

/// A scene imported and accelerated once, ready for any number of renders.
pub struct PreparedScene {
    scene: Scene,
    accel: EmbreeAccel,
    bounds: math::Aabb,
    import_time: Duration,
    accel_build_time: Duration,
}

impl PreparedScene {
    /// Imports GLB/glTF bytes and builds the acceleration structure.
    pub fn from_glb(bytes: &[u8], limits: &ImportLimits) -> Result<PreparedScene, RenderError> {
        let t0 = Instant::now();
        let scene = import_gltf_with_limits(bytes, limits)?;
        let import_time = t0.elapsed();
        let mut prepared = PreparedScene::from_scene(scene)?;
        prepared.import_time = import_time;
        Ok(prepared)
    }

    /// Imports USD bytes (`.usda`, `.usdc` or `.usdz`, told apart by content) and builds the
    /// acceleration structure.
    pub fn from_usd(bytes: &[u8], limits: &ImportLimits) -> Result<PreparedScene, RenderError> {
        let t0 = Instant::now();
        // In a child process where the binary serves one: openusd trusts declared sizes.
        let scene = scene::usd_isolate::import_usd(bytes, limits)?;
        let import_time = t0.elapsed();
        let mut prepared = PreparedScene::from_scene(scene)?;
        prepared.import_time = import_time;
        Ok(prepared)
    }

    /// Imports a model in any supported format (GLB/glTF or USD, told apart by content) and
    /// builds the acceleration structure. This is what renders of user files call.
    pub fn from_model(bytes: &[u8], limits: &ImportLimits) -> Result<PreparedScene, RenderError> {
        if UsdEncoding::sniff(bytes).is_some() {
            PreparedScene::from_usd(bytes, limits)
        } else {
            PreparedScene::from_glb(bytes, limits)
        }
    }

    /// Builds the acceleration structure for an in-memory scene.
    pub fn from_scene(scene: Scene) -> Result<PreparedScene, RenderError> {
        let t0 = Instant::now();
        let accel = EmbreeAccel::build(&scene)?;
        let accel_build_time = t0.elapsed();
        let bounds = scene.bounds();
        Ok(PreparedScene {
            scene,
            accel,
            bounds,
            import_time: Duration::ZERO,
            accel_build_time,
        })
    }

    pub fn scene(&self) -> &Scene {
        &self.scene
    }
    pub fn import_time(&self) -> Duration {
        self.import_time
    }
    pub fn accel_build_time(&self) -> Duration {
        self.accel_build_time
    }

    /// Path traces one frame of a resolved plan into a film (no denoise, no encode).
    /// Returns the film and the number of rays traced.
    pub fn render_film(
        &self,
        plan: &RenderPlan,
        frame: usize,
        hooks: &dyn RenderHooks,
    ) -> Result<(Film, u64), RenderError> {
        let angle = plan.frame_angles.get(frame).copied().unwrap_or(0.0);
        let aspect = plan.width as f32 / plan.height as f32;
        let rig = plan.studio.resolve(&self.bounds, aspect, angle);
        let integrator = Integrator::new(&self.scene, &self.accel, &rig);
        let settings = FrameSettings {
            width: plan.width,
            height: plan.height,
            samples: plan.samples,
            seed: frame_seed(plan.seed, frame as u32),
            max_bounces: plan.max_bounces,
            adaptive_threshold: plan.adaptive_threshold,
        };
        let total = plan.samples as u64 * plan.frame_angles.len() as u64;
        let base = plan.samples as u64 * frame as u64;
        integrator
            .render(&settings, hooks, base, total)
            .map_err(|Cancelled| RenderError::Cancelled)
    }

    /// Resolves a spec for the native engine and renders it ([`PreparedScene::render_plan`]).
    pub fn render(
        &self,
        spec: &RenderSpec,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        self.render_plan(&spec.resolve()?, hooks)
    }

    /// Renders a resolved plan: every frame, denoised and encoded. The stage timings include
    /// this scene's import and acceleration build.
    pub fn render_plan(
        &self,
        plan: &RenderPlan,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        let mut timings = StageTimings {
            import: self.import_time,
            accel_build: self.accel_build_time,
            ..StageTimings::default()
        };
        let mut rays = 0u64;
        let mut images = Vec::with_capacity(plan.frame_angles.len());
        let mut display_frames = Vec::new();
        let mut denoiser_used = plan.denoiser;
        let mut samples_sum = 0.0f64;
        for frame in 0..plan.frame_angles.len() {
            let t0 = Instant::now();
            let (mut film, frame_rays) = self.render_film(plan, frame, hooks)?;
            timings.render += t0.elapsed();
            rays += frame_rays;
            samples_sum += film.mean_samples();

            let t1 = Instant::now();
            denoiser_used =
                denoise::denoise(&mut film, plan.denoiser).map_err(RenderError::Denoise)?;
            timings.denoise += t1.elapsed();

            let t2 = Instant::now();
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
            timings.encode += t2.elapsed();
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
        let render_secs = timings.render.as_secs_f64();
        Ok(RenderOutput {
            images,
            animation,
            width: plan.width,
            height: plan.height,
            samples: plan.samples,
            sample_source: plan.sample_source,
            denoiser: denoiser_used,
            timings,
            rays,
            mean_samples: samples_sum / plan.frame_angles.len().max(1) as f64,
            mrays_per_s: if render_secs > 0.0 {
                rays as f64 / render_secs / 1e6
            } else {
                0.0
            },
        })
    }
}

/// The whole pipeline in one call: import GLB bytes, build the acceleration structure, frame
/// the studio, path trace, denoise and encode.
pub fn render_glb(
    bytes: &[u8],
    spec: &RenderSpec,
    hooks: &dyn RenderHooks,
) -> Result<RenderOutput, RenderError> {
    // Validate the spec before spending time on the import.
    spec.resolve()?;
    let prepared = PreparedScene::from_glb(bytes, &ImportLimits::default())?;
    prepared.render(spec, hooks)
}
