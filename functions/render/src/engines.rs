//! The engines a render job runs on, and the mapping of render errors to retry classes.

use std::sync::Mutex;
use std::time::Duration;

use lightbox_runtime::error::error_chain;
use lightbox_runtime::JobError;
use render_runtime::{PreparedScene, RenderHooks, RenderOutput, RenderSpec};

use crate::{ModelKind, RenderLimits};

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
