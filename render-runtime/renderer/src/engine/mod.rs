//! Render engines behind one spec: the crate's own path tracer ([`NativeEngine`]) and Blender
//! Cycles in a persistent worker process ([`CyclesEngine`]).
//!
//! Both take the same [`RenderSpec`] (with its [`Studio`](crate::Studio)) and return the same
//! [`RenderOutput`]: encoded stills or turntable frames plus the animation, the samples and
//! denoiser that ran, and per-stage timings. An engine lives as long as the function instance
//! and keeps what it can between jobs: the native engine its last imported scene, the Cycles
//! engine its Blender process and its last imported model.
//!
//! The set of engines is open (a USD-native or hardware engine could follow), so it is a trait;
//! [`EngineKind`] is only the name a job or the CLI uses to pick one.
//!
//! ```no_run
//! use render_runtime::engine::{Engine, EngineKind, Model};
//! use render_runtime::{NoHooks, RenderSpec};
//!
//! let mut engine = EngineKind::Cycles.start().unwrap();
//! let glb = lightbox_testmodels::bearing_glb(0.05);
//! let spec = RenderSpec { width: 64, height: 64, samples: Some(16), ..RenderSpec::default() };
//! // Resolve once (the plan is what limits are checked against), then render that plan.
//! let plan = spec.resolve_for(engine.kind()).unwrap();
//! let first = engine.render(Model::Bytes(&glb), &plan, &NoHooks).unwrap();
//! // The same model again: no Blender start-up and no import.
//! let second = engine.render(Model::Bytes(&glb), &plan, &NoHooks).unwrap();
//! assert!(second.timings.import <= first.timings.import);
//! ```

pub mod cycles;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    ImportLimits, PreparedScene, RenderError, RenderHooks, RenderOutput, RenderPlan, RenderSpec,
};

pub use cycles::{CyclesConfig, CyclesEngine, CyclesError, CyclesReport};

/// The model a job renders: bytes in memory or a file on disk (GLB/glTF or USD, told apart by
/// content).
#[derive(Clone, Copy, Debug)]
pub enum Model<'a> {
    Bytes(&'a [u8]),
    Path(&'a Path),
}

impl Model<'_> {
    /// The model's bytes (reads the file for [`Model::Path`]).
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, RenderError> {
        match self {
            Model::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
            Model::Path(p) => std::fs::read(p)
                .map(std::borrow::Cow::Owned)
                .map_err(|source| {
                    RenderError::Engine(EngineError::ModelUnreadable {
                        path: p.display().to_string(),
                        source,
                    })
                }),
        }
    }
}

/// A render engine that can serve many jobs in a row.
pub trait Engine: Send {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Renders `model` as the resolved `plan` says: every frame, denoised and encoded. The
    /// caller resolves the plan once (with [`RenderSpec::resolve_for`] and this engine's kind)
    /// and checks its limits against that same plan.
    fn render(
        &mut self,
        model: Model<'_>,
        plan: &RenderPlan,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError>;

    /// One line on what the last render ran on, for people (the native engine: the scene's
    /// parts and triangles; Cycles: Blender's version, device and worker start-up).
    fn summary(&self) -> Option<String> {
        None
    }

    /// Resolves `spec` for this engine and renders it (for callers with no limits to check).
    fn render_spec(
        &mut self,
        model: Model<'_>,
        spec: &RenderSpec,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        let plan = spec.resolve_for(self.kind())?;
        self.render(model, &plan, hooks)
    }
}

/// Engine names as jobs and the CLI spell them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// This crate's Embree path tracer.
    #[default]
    Native,
    /// Blender Cycles in a persistent worker process.
    Cycles,
}

impl EngineKind {
    /// Every engine, in the order error messages list them.
    pub const ALL: [EngineKind; 2] = [EngineKind::Native, EngineKind::Cycles];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Cycles => "cycles",
        }
    }

    /// Starts an engine of this kind with its default configuration (for Cycles:
    /// [`CyclesConfig::from_env`], and the Blender process is started and handshaken now).
    pub fn start(self) -> Result<Box<dyn Engine>, RenderError> {
        self.start_with(ImportLimits::default())
    }

    /// Starts an engine of this kind whose own imports (the native engine's) keep to `limits`.
    pub fn start_with(self, limits: ImportLimits) -> Result<Box<dyn Engine>, RenderError> {
        Ok(match self {
            EngineKind::Native => Box::new(NativeEngine::with_limits(limits)),
            EngineKind::Cycles => Box::new(CyclesEngine::start(CyclesConfig::from_env())?),
        })
    }

    /// The engine names, comma-separated, for messages (`native, cycles`).
    pub fn available() -> String {
        EngineKind::ALL.map(EngineKind::as_str).join(", ")
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<EngineKind, EngineError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "native" => Ok(EngineKind::Native),
            "cycles" => Ok(EngineKind::Cycles),
            other => Err(EngineError::UnknownEngine {
                name: other.to_string(),
            }),
        }
    }
}

/// Engine-level failures (the engine itself, not the model or the spec).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown engine {name:?} (available: {})", EngineKind::available())]
    UnknownEngine { name: String },
    #[error("cannot read model {path}")]
    ModelUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cycles(#[from] CyclesError),
}

impl EngineError {
    /// Whether running the same job again could succeed (a crashed or hung worker, say).
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::UnknownEngine { .. } | EngineError::ModelUnreadable { .. } => false,
            EngineError::Cycles(e) => e.is_retryable(),
        }
    }
}

/// A stable 64-bit content hash (FNV-1a) naming a model in caches.
pub fn model_key(bytes: &[u8]) -> u64 {
    // Eight lanes keep the loop fast on large GLBs; the lanes are folded in order.
    let mut lanes = [0xcbf2_9ce4_8422_2325u64; 8];
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, b) in lanes.iter_mut().zip(chunk) {
            *lane = (*lane ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in lanes
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .chain(chunks.remainder().iter().copied())
        .chain((bytes.len() as u64).to_le_bytes())
    {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The native path tracer as an engine. It keeps the last imported scene, so rendering the same
/// model again (another size, a turntable) skips import and acceleration build.
#[derive(Default)]
pub struct NativeEngine {
    limits: ImportLimits,
    cached: Option<(u64, PreparedScene)>,
}

impl NativeEngine {
    pub fn new() -> NativeEngine {
        NativeEngine::default()
    }

    pub fn with_limits(limits: ImportLimits) -> NativeEngine {
        NativeEngine {
            limits,
            cached: None,
        }
    }
}

impl Engine for NativeEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Native
    }

    fn summary(&self) -> Option<String> {
        let (_, prepared) = self.cached.as_ref()?;
        let scene = prepared.scene();
        Some(format!(
            "{} parts, {} meshes, {} triangles",
            scene.instances.len(),
            scene.meshes.len(),
            scene.instanced_triangle_count()
        ))
    }

    fn render(
        &mut self,
        model: Model<'_>,
        plan: &RenderPlan,
        hooks: &dyn RenderHooks,
    ) -> Result<RenderOutput, RenderError> {
        let bytes = model.bytes()?;
        let key = model_key(&bytes);
        let cached = matches!(&self.cached, Some((k, _)) if *k == key);
        if !cached {
            self.cached = None;
            let prepared = PreparedScene::from_model(&bytes, &self.limits)?;
            self.cached = Some((key, prepared));
        }
        let (_, prepared) = self.cached.as_ref().expect("scene prepared above");
        let mut out = prepared.render_plan(plan, hooks)?;
        if cached {
            // This job paid no import and no build.
            out.timings.import = std::time::Duration::ZERO;
            out.timings.accel_build = std::time::Duration::ZERO;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_parse() {
        assert_eq!("native".parse::<EngineKind>().unwrap(), EngineKind::Native);
        assert_eq!(
            " Cycles ".parse::<EngineKind>().unwrap(),
            EngineKind::Cycles
        );
        let err = "eevee".parse::<EngineKind>().unwrap_err().to_string();
        assert_eq!(err, "unknown engine \"eevee\" (available: native, cycles)");
        let json = serde_json::to_string(&EngineKind::Cycles).unwrap();
        assert_eq!(json, "\"cycles\"");
    }

    #[test]
    fn model_key_separates_content_and_length() {
        let a = model_key(b"hello world, this is a model");
        assert_eq!(a, model_key(b"hello world, this is a model"));
        assert_ne!(a, model_key(b"hello world, this is a modem"));
        assert_ne!(model_key(b""), model_key(&[0u8]));
        assert_ne!(model_key(&[0u8; 8]), model_key(&[0u8; 16]));
    }
}
