//! Input resolution: a USD master, the model itself, or a STEP file through the tessellation cache
//! (or a tessellate job that continues this one).

use lightbox_runtime::requests::{RenderRequest, TessellateRequest, TessellationParams};
use lightbox_runtime::worker::JobContext;
use lightbox_runtime::{JobError, ObjectKey};
use serde::Serialize;
use tracing::info;

use crate::model::{ModelKind, UnsupportedModel};

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

pub(crate) enum Resolved {
    Ready(SourcePath),
    Waiting(String),
}

pub(crate) async fn resolve_source(
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
        JobError::permanent(
            UnsupportedModel {
                name: request.model.to_string(),
            }
            .to_string(),
        )
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

/// Asks the runtime to run a tessellate job that writes the cached GLB and then continues this
/// render job, naming the tessellate job in the continued request.
async fn request_tessellation(
    ctx: &JobContext,
    request: &RenderRequest,
    params: &TessellationParams,
    cached: &ObjectKey,
) -> Result<String, JobError> {
    let tessellate = TessellateRequest {
        input: request.model.clone(),
        output: Some(cached.clone()),
        linear_deflection: params.linear_deflection,
        angular_deflection: params.angular_deflection,
    };
    // One tessellate job per render job, however often this job is delivered: the runtime
    // derives its id (and dedupe id) from this job and the request.
    let id = ctx
        .run_first(&tessellate, |tessellate_id| RenderRequest {
            tessellated_by: Some(tessellate_id.to_string()),
            ..request.clone()
        })
        .await?;
    info!(tessellate_job = %id, model = %request.model, "requested tessellation; this job continues when it is done");
    Ok(id.to_string())
}
