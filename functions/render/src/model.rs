//! The one model-kind rule, shared by the function and `lightbox render`: a model's extension
//! names its format (GLB/glTF, USD or STEP).

use std::path::Path;

use lightbox_runtime::ObjectKey;
use serde::Serialize;

/// The kind of model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Glb,
    Usd,
    Step,
}

impl ModelKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [ModelKind; 3] = [ModelKind::Glb, ModelKind::Usd, ModelKind::Step];

    /// The extensions (lowercase, without the dot) that name this kind.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ModelKind::Glb => &["glb", "gltf"],
            ModelKind::Usd => &["usd", "usda", "usdc", "usdz"],
            ModelKind::Step => &["step", "stp"],
        }
    }

    /// The format's name for people.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Glb => "GLB/glTF",
            ModelKind::Usd => "USD",
            ModelKind::Step => "STEP",
        }
    }

    /// From an extension (without the dot, any case).
    pub fn from_extension(extension: &str) -> Option<Self> {
        ModelKind::ALL.into_iter().find(|kind| {
            kind.extensions()
                .iter()
                .any(|known| known.eq_ignore_ascii_case(extension))
        })
    }

    /// From a key's extension.
    pub fn of(key: &ObjectKey) -> Option<Self> {
        ModelKind::from_extension(&key.extension()?)
    }

    /// From a file's extension.
    pub fn of_path(path: &Path) -> Result<Self, UnsupportedModel> {
        path.extension()
            .and_then(|extension| extension.to_str())
            .and_then(ModelKind::from_extension)
            .ok_or_else(|| UnsupportedModel {
                name: path.display().to_string(),
            })
    }

    /// Every supported format with its extensions:
    /// `GLB/glTF (.glb, .gltf), USD (.usd, .usda, .usdc, .usdz), STEP (.step, .stp)`.
    pub fn supported() -> String {
        ModelKind::ALL
            .map(|kind| {
                let extensions: Vec<String> =
                    kind.extensions().iter().map(|e| format!(".{e}")).collect();
                format!("{} ({})", kind.name(), extensions.join(", "))
            })
            .join(", ")
    }
}

/// A model whose extension names no supported format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {name} is not a .glb, .usd(a/c/z) or .step/.stp file; supported formats: {}",
    ModelKind::supported()
)]
pub struct UnsupportedModel {
    /// The key or path as given.
    pub name: String,
}
