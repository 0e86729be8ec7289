//! A `.gltf` (or GLB) whose buffers and images are files beside it: they are fetched from the
//! store under the model's own key prefix (`models/bottle.gltf` names `models/bottle.bin` as
//! `bottle.bin`), within the import's resource limits (file count, total bytes, each object's
//! size checked before it is read), and bundled with the model into one self-contained GLB
//! (`lightbox_scene::gltf_decode::pack_glb`, through an in-memory resolver).
//!
//! The engines take one model's bytes (and the Cycles engine hands Blender one file), so the
//! bundle is made here, at the edge; the output keys, derived from the model's bytes, then
//! change when a texture beside it does.

use bytes::Bytes;
use lightbox_runtime::error::error_chain;
use lightbox_runtime::worker::JobContext;
use lightbox_runtime::{JobError, ObjectKey, StoreError};
use render_runtime::scene::gltf_decode::{external_files, pack_glb};
use render_runtime::scene::resources::{MemoryResources, ResourceLimits};
use render_runtime::ImportLimits;
use tracing::info;

use crate::ModelKind;

/// The key of `path` (relative, from the model's URIs) beside the model at `model`.
fn sibling_key(model: &ObjectKey, path: &str) -> Result<ObjectKey, JobError> {
    let key = match model.as_str().rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{path}"),
        None => path.to_owned(),
    };
    ObjectKey::new(key).map_err(|err| {
        JobError::permanent(format!(
            "model {model} refers to '{path}', which is not a valid object key beside it: {err}"
        ))
    })
}

/// Returns `model` itself when it refers to no external file; otherwise fetches the files it
/// refers to from beside `key` and returns the self-contained GLB of them all.
pub(crate) async fn bundle(
    ctx: &JobContext,
    key: &ObjectKey,
    kind: ModelKind,
    model: Bytes,
    limits: &ImportLimits,
) -> Result<Bytes, JobError> {
    if kind != ModelKind::Glb {
        return Ok(model);
    }
    // A file that cannot even be parsed for its URIs is left to the importer, which reports
    // the problem with its location, like any other broken model.
    let files = match external_files(&model) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) | Err(_) => return Ok(model),
    };
    let resource_limits = ResourceLimits::for_import(limits);
    if files.len() > resource_limits.max_files {
        return Err(JobError::permanent(format!(
            "model {key} refers to {} external files, over the limit of {}",
            files.len(),
            resource_limits.max_files
        )));
    }
    let mut resources = MemoryResources::default();
    let mut total = 0u64;
    for path in &files {
        let sibling = sibling_key(key, path.as_str())?;
        let remaining = resource_limits.max_total_bytes.saturating_sub(total);
        let bytes = match ctx.store.get(&sibling, Some(remaining)).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) => {
                return Err(JobError::permanent(format!(
                    "model {key} refers to '{path}', but {sibling} does not exist in the store \
                     (files a .gltf names are read from beside it)"
                )))
            }
            Err(StoreError::TooLarge { size, .. }) => {
                return Err(JobError::permanent(format!(
                "model {key} refers to '{path}' ({sibling}, {size} bytes): over the {remaining} \
                     bytes left of the model's resource limit ({} bytes in all)",
                resource_limits.max_total_bytes
            )))
            }
            Err(err) => return Err(err.into()),
        };
        total += bytes.len() as u64;
        resources.insert(path.as_str(), Vec::from(bytes));
    }
    info!(model = %key, files = files.len(), bytes = total, "fetched the files the model refers to");
    let limits = *limits;
    let packed = tokio::task::spawn_blocking(move || pack_glb(&model, &resources, &limits))
        .await
        .map_err(|err| JobError::permanent(format!("bundling the model's files crashed: {err}")))?
        .map_err(|err| JobError::permanent(format!("model {key}: {}", error_chain(&err))))?;
    Ok(Bytes::from(packed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_share_the_models_prefix() {
        let model = ObjectKey::new("models/bottle/bottle.gltf").unwrap();
        assert_eq!(
            sibling_key(&model, "tex/base color.png").unwrap().as_str(),
            "models/bottle/tex/base color.png"
        );
        let top = ObjectKey::new("bottle.gltf").unwrap();
        assert_eq!(
            sibling_key(&top, "bottle.bin").unwrap().as_str(),
            "bottle.bin"
        );
    }
}
