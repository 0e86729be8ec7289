//! The files a model names beside it: a `.gltf`'s buffers and images, a USD stage's layers
//! (sublayers, references, payloads in every variant) and textures. They are fetched from the
//! store under the model's own key prefix (`models/bottle.gltf` names `models/bottle.bin` as
//! `bottle.bin`, and never a key outside that prefix), within the import's resource limits (file
//! count, total bytes, USD depth; each object's size checked before it is read), and bundled with
//! the model into one self-contained GLB or usdz by `lightbox_scene::model_files`, which the
//! convert function uses too.
//!
//! The engines take one model's bytes (and the Cycles engine hands Blender one file), so the
//! bundle is made here, at the edge; the output keys, derived from the model's bytes, then
//! change when a texture beside it does.

use bytes::Bytes;
use lightbox_runtime::error::error_chain;
use lightbox_runtime::worker::JobContext;
use lightbox_runtime::{JobError, ObjectKey, StoreError};
use render_runtime::scene::model_files::{fetch_model_files, Fetch, ModelFilesError};
use render_runtime::scene::resources::ResourceError;
use render_runtime::ImportLimits;
use tracing::info;

use crate::ModelKind;

/// Returns `model` itself when it names no file beside it; otherwise fetches the files it names
/// from beside `key` and returns the self-contained GLB or usdz of them all.
pub(crate) async fn bundle(
    ctx: &JobContext,
    key: &ObjectKey,
    kind: ModelKind,
    model: Bytes,
    limits: &ImportLimits,
) -> Result<Bytes, JobError> {
    if kind == ModelKind::Step {
        return Ok(model);
    }
    let fetch = |path: String, max_bytes: u64| async move {
        let sibling = match sibling_key(key, &path) {
            Ok(sibling) => sibling,
            Err(err) => {
                return Fetch::Failed(ResourceError::Refused {
                    uri: path,
                    reason: err.reason,
                })
            }
        };
        match ctx.store.get(&sibling, Some(max_bytes)).await {
            Ok(bytes) => Fetch::Ok(Vec::from(bytes)),
            Err(StoreError::NotFound { .. }) => Fetch::Failed(ResourceError::NotFound {
                path,
                looked_for: sibling.to_string(),
            }),
            Err(StoreError::TooLarge { size, limit, .. }) => {
                Fetch::Failed(ResourceError::TooLarge { path, size, limit })
            }
            // A store that fails now may answer later: the job's retry class decides.
            Err(err) => Fetch::Other(JobError::from(err)),
        }
    };
    let fetched = match fetch_model_files(key.as_str(), Vec::from(model), limits, fetch).await {
        Ok(fetched) => fetched,
        Err(ModelFilesError::Fetch(err)) => return Err(err),
        Err(err) => return Err(JobError::permanent(error_chain(&err))),
    };
    let files = fetched.fetched();
    if files > 0 {
        info!(model = %key, files, "fetched the files the model names");
    }
    let limits = *limits;
    let bundled =
        tokio::task::spawn_blocking(move || fetched.into_model_bytes::<JobError>(&limits))
            .await
            .map_err(|err| {
                JobError::permanent(format!("bundling the model's files crashed: {err}"))
            })?
            .map_err(|err| JobError::permanent(error_chain(&err)))?;
    Ok(Bytes::from(bundled))
}

/// The key of `path` (relative, from the model's URIs) beside the model at `model`.
fn sibling_key(
    model: &ObjectKey,
    path: &str,
) -> Result<ObjectKey, lightbox_runtime::store::KeyError> {
    let key = match model.as_str().rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{path}"),
        None => path.to_owned(),
    };
    ObjectKey::new(key)
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
