//! The files a model names beside it, fetched from wherever the caller keeps them (the object
//! store under the model's key prefix, for the render and convert functions) and bundled with
//! the model into one self-contained buffer: a `.gltf`'s buffers and images into one GLB
//! ([`pack_glb`]), a USD stage's layers and textures into one in-memory usdz
//! ([`UsdFileCollector`]). Within the import's limits (file count and total bytes for both, layer
//! depth for USD), and a `.gltf` file that is not there is an error naming it.
//!
//! The fetching is async (a store read) and this crate knows no runtime, so
//! [`fetch_model_files`] takes the fetch as a closure returning a future; the bundling of a
//! glTF (which decodes nothing, but copies every buffer) is left to
//! [`FetchedFiles::into_model_bytes`], for the caller to run off its async threads.
//!
//! ```
//! use lightbox_scene::model_files::{fetch_model_files, Fetch};
//! use lightbox_scene::resources::ResourceError;
//! use lightbox_scene::ImportLimits;
//!
//! let gltf = br#"{"asset":{"version":"2.0"},"buffers":[{"uri":"tri.bin","byteLength":4}]}"#;
//! let fetch = |path: String, _max: u64| async move {
//!     match path.as_str() {
//!         "tri.bin" => Fetch::<()>::Ok(vec![0; 4]),
//!         _ => Fetch::Failed(ResourceError::NotFound { looked_for: path.clone(), path }),
//!     }
//! };
//! let limits = ImportLimits::default();
//! let fetched = block_on(fetch_model_files("m/tri.gltf", gltf.to_vec(), &limits, fetch));
//! let glb = fetched.unwrap().into_model_bytes::<()>(&limits).unwrap();
//! assert_eq!(&glb[..4], b"glTF");
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//! ```

use std::future::Future;

use crate::gltf::ImportLimits;
use crate::gltf_decode::{external_files, pack_glb};
use crate::resources::{MemoryResources, ResourceError, ResourceLimits};
use crate::usd::{UsdEncoding, UsdImportError};
use crate::usd_files::{UsdFileCollector, UsdFileLimits, UsdFiles};
use crate::ImportError;

/// What the caller's fetch of one file gives.
pub enum Fetch<E> {
    /// The file's bytes.
    Ok(Vec<u8>),
    /// A problem with the model's files (missing, over the limit, an invalid key): permanent.
    Failed(ResourceError),
    /// The caller's own error (a store that did not answer), handed back as it is.
    Other(E),
}

/// Why a model's files could not be fetched or bundled.
#[derive(Debug, thiserror::Error)]
pub enum ModelFilesError<E> {
    #[error("model {model} refers to {count} external files, over the limit of {limit}")]
    TooManyFiles {
        model: String,
        count: usize,
        limit: usize,
    },
    #[error("model {model} refers to '{path}': {source}")]
    File {
        model: String,
        path: String,
        #[source]
        source: ResourceError,
    },
    #[error("model {model}: {source}")]
    Gltf {
        model: String,
        #[source]
        source: ImportError,
    },
    #[error("model {model}: {source}")]
    Usd {
        model: String,
        #[source]
        source: UsdImportError,
    },
    /// The fetch's own error.
    #[error("fetching the model's files")]
    Fetch(E),
}

/// A model with the files it names, ready to bundle.
pub enum FetchedFiles {
    /// Names no file (or is a package already): its bytes as they are.
    Alone(Vec<u8>),
    /// A `.gltf` and its buffers and images, by the relative path its URIs name.
    Gltf {
        model: String,
        bytes: Vec<u8>,
        files: MemoryResources,
    },
    /// A USD stage's files, root layer first.
    Usd(UsdFiles),
}

impl FetchedFiles {
    /// Files fetched beside the model (0 for a model alone).
    pub fn fetched(&self) -> usize {
        match self {
            FetchedFiles::Alone(_) => 0,
            FetchedFiles::Gltf { files, .. } => files.len(),
            FetchedFiles::Usd(files) => files.paths().count().saturating_sub(1),
        }
    }

    /// One self-contained buffer for the importers: the GLB with every buffer and image in it,
    /// the usdz package of every layer and texture, or the model alone.
    pub fn into_model_bytes<E>(self, limits: &ImportLimits) -> Result<Vec<u8>, ModelFilesError<E>> {
        match self {
            FetchedFiles::Alone(bytes) => Ok(bytes),
            FetchedFiles::Gltf {
                model,
                bytes,
                files,
            } => pack_glb(&bytes, &files, limits)
                .map_err(|source| ModelFilesError::Gltf { model, source }),
            FetchedFiles::Usd(files) => Ok(files.into_model_bytes()),
        }
    }
}

/// Fetches the files the model at `model` (its name or key: `models/bottle.gltf`; the files are
/// named relative to its folder) refers to, each with `fetch(path, max_bytes)` (the relative
/// path as the model names it, and the most bytes it may have), within `limits`.
pub async fn fetch_model_files<E, F, Fut>(
    model: &str,
    bytes: Vec<u8>,
    limits: &ImportLimits,
    mut fetch: F,
) -> Result<FetchedFiles, ModelFilesError<E>>
where
    F: FnMut(String, u64) -> Fut,
    Fut: Future<Output = Fetch<E>>,
{
    let name = model.rsplit_once('/').map_or(model, |(_, name)| name);
    match UsdEncoding::sniff(&bytes) {
        Some(UsdEncoding::Usdz) => return Ok(FetchedFiles::Alone(bytes)),
        Some(UsdEncoding::Usda | UsdEncoding::Usdc) => {
            let usd = |source| ModelFilesError::Usd {
                model: model.to_owned(),
                source,
            };
            let mut collector =
                UsdFileCollector::new(name, bytes, UsdFileLimits::for_import(limits))
                    .map_err(usd)?;
            while let Some(request) = collector.next_request() {
                let result = match fetch(request.path.as_str().to_owned(), request.max_bytes).await
                {
                    Fetch::Ok(bytes) => Ok(bytes),
                    Fetch::Failed(err) => Err(err),
                    Fetch::Other(err) => return Err(ModelFilesError::Fetch(err)),
                };
                collector.provide(result).map_err(usd)?;
            }
            return Ok(FetchedFiles::Usd(collector.finish()));
        }
        None => {}
    }
    // A file that cannot even be parsed for its URIs is left to the importer, which reports the
    // problem with its location, like any other broken model.
    let paths = match external_files(&bytes) {
        Ok(paths) if !paths.is_empty() => paths,
        Ok(_) | Err(_) => return Ok(FetchedFiles::Alone(bytes)),
    };
    let resource_limits = ResourceLimits::for_import(limits);
    if paths.len() > resource_limits.max_files {
        return Err(ModelFilesError::TooManyFiles {
            model: model.to_owned(),
            count: paths.len(),
            limit: resource_limits.max_files,
        });
    }
    let mut files = MemoryResources::default();
    let mut total = 0u64;
    for path in paths {
        let remaining = resource_limits.max_total_bytes.saturating_sub(total);
        let data = match fetch(path.as_str().to_owned(), remaining).await {
            Fetch::Ok(data) => data,
            Fetch::Failed(source) => {
                return Err(ModelFilesError::File {
                    model: model.to_owned(),
                    path: path.as_str().to_owned(),
                    source,
                })
            }
            Fetch::Other(err) => return Err(ModelFilesError::Fetch(err)),
        };
        total += data.len() as u64;
        files.insert(path.as_str(), data);
    }
    Ok(FetchedFiles::Gltf {
        model: model.to_owned(),
        bytes,
        files,
    })
}
