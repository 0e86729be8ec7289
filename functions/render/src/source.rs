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

/// A USD stage whose layers and textures are files beside it (sublayers, references, payloads
/// in every variant, texture files): each is fetched from the store under the model's key
/// prefix (`shots/a/shot.usda` names `shots/a/props/board.usda` as `props/board.usda`, and never
/// a key outside that prefix), within the import's resource limits, and packaged with the stage
/// into one in-memory usdz (`lightbox_scene::usd_files`). A stage that names no file, and any
/// model that is not a USD layer, is returned as it is.
pub(crate) async fn bundle_usd_files(
    ctx: &JobContext,
    key: &ObjectKey,
    kind: ModelKind,
    model: bytes::Bytes,
    limits: &render_runtime::ImportLimits,
) -> Result<bytes::Bytes, JobError> {
    use lightbox_runtime::StoreError;
    use render_runtime::scene::resources::ResourceError;
    use render_runtime::scene::usd_files::{UsdFileCollector, UsdFileLimits};
    use render_runtime::UsdEncoding;

    if kind != ModelKind::Usd
        || !matches!(
            UsdEncoding::sniff(&model),
            Some(UsdEncoding::Usda | UsdEncoding::Usdc)
        )
    {
        return Ok(model);
    }
    let invalid = |err: render_runtime::UsdImportError| {
        JobError::permanent(format!(
            "model {key}: {}",
            lightbox_runtime::error::error_chain(&err)
        ))
    };
    let (prefix, name) = match key.as_str().rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key.as_str()),
    };
    let limits = UsdFileLimits::for_import(limits);
    let mut collector =
        UsdFileCollector::new(name, Vec::from(model.clone()), limits).map_err(invalid)?;
    let mut fetched = 0usize;
    while let Some(request) = collector.next_request() {
        let path = request.path.as_str();
        let sibling = match prefix {
            Some(prefix) => format!("{prefix}/{path}"),
            None => path.to_owned(),
        };
        let result = match ObjectKey::new(sibling.clone()) {
            Err(err) => Err(ResourceError::Refused {
                uri: path.to_owned(),
                reason: err.reason,
            }),
            Ok(sibling_key) => match ctx.store.get(&sibling_key, Some(request.max_bytes)).await {
                Ok(bytes) => {
                    fetched += 1;
                    Ok(Vec::from(bytes))
                }
                Err(StoreError::NotFound { .. }) => Err(ResourceError::NotFound {
                    path: path.to_owned(),
                    looked_for: sibling,
                }),
                Err(StoreError::TooLarge { size, limit, .. }) => Err(ResourceError::TooLarge {
                    path: path.to_owned(),
                    size,
                    limit,
                }),
                // A store that fails now may answer later: the job's retry class decides.
                Err(err) => return Err(err.into()),
            },
        };
        collector.provide(result).map_err(invalid)?;
    }
    let files = collector.finish();
    if fetched > 0 {
        info!(model = %key, files = fetched, bytes = files.total_bytes(), "fetched the files the USD stage names");
    }
    Ok(bytes::Bytes::from(files.into_model_bytes()))
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
