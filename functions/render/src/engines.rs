//! The engines a render job runs on ([`EnginePool`]: one warm engine per kind), the one render
//! path every caller takes ([`render_with`]), and the one place a render error gets its retry
//! class ([`RenderFailure`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lightbox_runtime::error::error_chain;
use lightbox_runtime::JobError;
use render_runtime::{
    Engine, EngineKind, ImportLimits, Model, NativeEngine, RenderError, RenderHooks, RenderOutput,
    RenderPlan, RenderSpec, UsdEncoding,
};

use crate::{ModelKind, RenderLimits};

/// What a render of one model produced.
pub struct Rendered {
    pub outputs: Vec<RenderOutput>,
    /// Import time paid by this job (zero when the engine still held the model).
    pub import: Duration,
    /// Acceleration build (or Cycles scene sync) paid by this job.
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

impl From<RenderError> for RenderFailure {
    /// The retry class of a render error, decided from its type: bad input and bad specs never
    /// succeed on a retry; a crashed engine may.
    fn from(err: RenderError) -> Self {
        if matches!(err, RenderError::Cancelled) {
            return RenderFailure::Cancelled;
        }
        let mut message = error_chain(&err);
        if err.over_budget().is_some() {
            // Name the setting that raises the budget.
            message.push_str(" (LIGHTBOX_RENDER_MEMORY_MB)");
        }
        if err.is_retryable() {
            RenderFailure::Internal(message)
        } else {
            RenderFailure::Invalid(message)
        }
    }
}

/// Renders every plan of one model with one engine: the one render path of the function, the
/// CLI and the benchmarks. `kind` is what the model's name says it is (see [`ModelKind`]).
pub fn render_with(
    engine: &mut dyn Engine,
    model: &[u8],
    kind: ModelKind,
    plans: &[RenderPlan],
    hooks: &dyn RenderHooks,
) -> Result<Rendered, RenderFailure> {
    refuse_mislabelled(model, kind)?;
    let mut rendered = Rendered {
        outputs: Vec::with_capacity(plans.len()),
        import: Duration::ZERO,
        accel_build: Duration::ZERO,
    };
    for plan in plans {
        let output = engine.render(Model::Bytes(model), plan, hooks)?;
        // The engine reports the import and build only for the render that paid them.
        rendered.import += output.timings.import;
        rendered.accel_build += output.timings.accel_build;
        rendered.outputs.push(output);
    }
    Ok(rendered)
}

/// The engines tell GLB and USD apart by content, but the name decides which reader a model
/// gets: a GLB named `.usda` fails as USD (and a USD named `.glb` as glTF), with that reader's
/// own error, which it returns from the first bytes without reading further.
fn refuse_mislabelled(model: &[u8], kind: ModelKind) -> Result<(), RenderFailure> {
    let head = &model[..model.len().min(16)];
    let is_usd = UsdEncoding::sniff(head).is_some();
    let err = match kind {
        ModelKind::Usd if !is_usd => {
            render_runtime::import_usd_with_limits(head, &ImportLimits::default())
                .err()
                .map(RenderError::from)
        }
        ModelKind::Glb if is_usd => {
            render_runtime::import_gltf_with_limits(head, &ImportLimits::default())
                .err()
                .map(RenderError::from)
        }
        ModelKind::Step => {
            return Err(RenderFailure::Invalid(
                "a STEP model must be tessellated to GLB before rendering".into(),
            ))
        }
        _ => None,
    };
    err.map_or(Ok(()), |err| Err(err.into()))
}

/// Imports a model once and renders every spec of it with a fresh native engine: the pure core
/// of the function (bytes and specs in, encoded images out), checked against `limits` like a job.
/// Blocking (runs on every core).
pub fn render_model(
    bytes: &[u8],
    kind: ModelKind,
    specs: &[RenderSpec],
    limits: &RenderLimits,
    hooks: &dyn RenderHooks,
) -> Result<Rendered, RenderFailure> {
    let plans = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| limits.plan(index, spec, EngineKind::Native))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RenderFailure::Invalid)?;
    let mut engine = NativeEngine::with_limits(limits.import);
    render_with(&mut engine, bytes, kind, &plans, hooks)
}

/// The engines of one function instance, kept warm between jobs: the native engine keeps the
/// last imported scene, the Cycles engine its Blender process (and the model loaded in it).
///
/// The native engine is lent to one job at a time; a job that finds it busy starts a cold one,
/// and the engine returned last stays warm. Cycles jobs take turns at the one Blender process
/// instead, as that process is what makes Cycles fast and a second one would double its memory.
pub struct EnginePool {
    limits: ImportLimits,
    warm: HashMap<EngineKind, Slot>,
}

impl EnginePool {
    /// An empty pool whose engines import under `limits`; each engine starts with its first job.
    pub fn new(limits: ImportLimits) -> Self {
        Self {
            limits,
            warm: EngineKind::ALL
                .into_iter()
                .map(|kind| (kind, Mutex::new(None)))
                .collect(),
        }
    }

    /// Renders every plan of one model with an engine of kind `engine`. Blocking.
    pub fn render(
        &self,
        engine: EngineKind,
        model: &[u8],
        kind: ModelKind,
        plans: &[RenderPlan],
        hooks: &dyn RenderHooks,
    ) -> Result<Rendered, RenderFailure> {
        let slot = &self.warm[&engine];
        if takes_turns(engine) {
            let mut warm = lock(slot);
            let lent = match warm.as_mut() {
                Some(lent) => lent,
                None => warm.insert(engine.start_with(self.limits)?),
            };
            return render_with(lent.as_mut(), model, kind, plans, hooks);
        }
        let idle = lock(slot).take();
        let mut lent = match idle {
            Some(lent) => lent,
            None => engine.start_with(self.limits)?,
        };
        let rendered = render_with(lent.as_mut(), model, kind, plans, hooks);
        *lock(slot) = Some(lent);
        rendered
    }
}

/// Whether jobs on this engine wait for the one warm instance rather than starting another.
fn takes_turns(engine: EngineKind) -> bool {
    match engine {
        EngineKind::Native => false,
        EngineKind::Cycles => true,
    }
}

type Slot = Mutex<Option<Box<dyn Engine>>>;

fn lock(slot: &Slot) -> MutexGuard<'_, Option<Box<dyn Engine>>> {
    slot.lock().unwrap_or_else(|poisoned| {
        // A render panicked while holding this engine: its state is unknown, so start afresh.
        let mut engine = poisoned.into_inner();
        *engine = None;
        engine
    })
}
