//! Per-queue render limits and the default memory budget probed from the host or its cgroup.

use lightbox_runtime::config::env_parse;
use lightbox_runtime::error::error_chain;
use lightbox_runtime::requests::RenderOutputRequest;
use lightbox_runtime::JobError;
use render_runtime::{EngineKind, ImportLimits, RenderPlan, RenderSpec};

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

    /// Resolves output `index` for `engine` and checks that plan against the limits; the same
    /// plan is what the engine then renders.
    pub fn plan(
        &self,
        index: usize,
        spec: &RenderSpec,
        engine: EngineKind,
    ) -> Result<RenderPlan, String> {
        let plan = spec
            .resolve_for(engine)
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
        Ok(plan)
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

/// One output of a job: the spec as the job asked (its key derives from it) and the plan it
/// resolved to for the job's engine (what is checked and rendered).
#[derive(Clone, Debug)]
pub struct PlannedOutput {
    pub spec: RenderSpec,
    pub plan: RenderPlan,
}

/// Parses a job's outputs and resolves each once for `engine`, refusing unknown fields and
/// anything over the limits with the output's index.
pub fn plan_outputs(
    outputs: &[RenderOutputRequest],
    engine: EngineKind,
    limits: &RenderLimits,
) -> Result<Vec<PlannedOutput>, JobError> {
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
            let plan = limits
                .plan(index, &spec, engine)
                .map_err(JobError::permanent)?;
            Ok(PlannedOutput { spec, plan })
        })
        .collect()
}

/// The specs of a job's outputs as [`plan_outputs`] accepts them for the native engine.
pub fn parse_specs(
    outputs: &[RenderOutputRequest],
    limits: &RenderLimits,
) -> Result<Vec<RenderSpec>, JobError> {
    let planned = plan_outputs(outputs, EngineKind::Native, limits)?;
    Ok(planned.into_iter().map(|output| output.spec).collect())
}
