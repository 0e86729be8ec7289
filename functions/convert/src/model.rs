//! Model conversion, GLB ⇄ USD: the pure core that the convert handler and `lightbox convert`
//! run for 3D inputs. Reading and writing live in the scene crate (`lightbox-scene`) (USD is written by
//! its own writer, which Pixar's USD opens and validates).
//!
//! ```
//! use lightbox_convert::model::{convert_model, ModelFormat};
//! use lightbox_scene::ImportLimits;
//!
//! let glb = lightbox_testmodels::bearing_glb(0.02);
//! let usdz = convert_model(&glb, ModelFormat::Usdz, &ImportLimits::default()).unwrap();
//! assert_eq!(&usdz.bytes[..4], b"PK\x03\x04");
//! let back = convert_model(&usdz.bytes, ModelFormat::Glb, &ImportLimits::default()).unwrap();
//! assert_eq!(&back.bytes[..4], b"glTF");
//! assert_eq!(back.instances, usdz.instances);
//! ```

use std::time::{Duration, Instant};

use lightbox_scene::export::export_glb;
use lightbox_scene::usd_write::{export_usda_with, export_usdz_with, UsdWriteOptions};
use lightbox_scene::{
    import_gltf_with_resources, ImportError, ImportLimits, NoResources, Resources, Scene,
    UsdEncoding, UsdImportError,
};

/// A model file format, input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// Binary glTF 2.0 (input also accepts self-contained `.gltf` JSON).
    Glb,
    /// USD text.
    Usda,
    /// USD binary crate: read only (our writer writes text; Pixar's tools can recode it).
    Usdc,
    /// USD zip package holding one `.usda` layer.
    Usdz,
}

impl ModelFormat {
    /// The format of the given file extension (`glb`, `gltf`, `usda`, `usd`, `usdc`, `usdz`).
    /// `.usd` may hold text or crate; as an output it means text.
    pub fn from_extension(extension: &str) -> Option<ModelFormat> {
        match extension.to_ascii_lowercase().as_str() {
            "glb" | "gltf" => Some(ModelFormat::Glb),
            "usda" | "usd" => Some(ModelFormat::Usda),
            "usdc" => Some(ModelFormat::Usdc),
            "usdz" => Some(ModelFormat::Usdz),
            _ => None,
        }
    }

    /// The format of model bytes, from their content; `None` when they are neither USD nor
    /// glTF.
    pub fn sniff(bytes: &[u8]) -> Option<ModelFormat> {
        match UsdEncoding::sniff(bytes) {
            Some(UsdEncoding::Usda) => Some(ModelFormat::Usda),
            Some(UsdEncoding::Usdc) => Some(ModelFormat::Usdc),
            Some(UsdEncoding::Usdz) => Some(ModelFormat::Usdz),
            None if bytes.starts_with(b"glTF") => Some(ModelFormat::Glb),
            None if bytes.trim_ascii_start().starts_with(b"{") => Some(ModelFormat::Glb),
            None => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ModelFormat::Glb => "glb",
            ModelFormat::Usda => "usda",
            ModelFormat::Usdc => "usdc",
            ModelFormat::Usdz => "usdz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ModelFormat::Glb => "model/gltf-binary",
            ModelFormat::Usda | ModelFormat::Usdc => "model/vnd.pixar.usd",
            ModelFormat::Usdz => "model/vnd.usdz+zip",
        }
    }
}

/// Why a model conversion failed. Every variant is a problem with the input or the request.
#[derive(Debug, thiserror::Error)]
pub enum ModelConvertError {
    #[error("input is neither glTF/GLB nor USD (usda, usdc, usdz)")]
    UnknownInput,
    #[error("cannot write {0:?}: only glb, usda and usdz are written")]
    UnsupportedOutput(ModelFormat),
    #[error("invalid glTF input")]
    Gltf(#[from] ImportError),
    #[error("invalid USD input")]
    Usd(#[from] UsdImportError),
}

/// A converted model with what went into it.
#[derive(Debug, Clone)]
pub struct ConvertedModel {
    pub bytes: Vec<u8>,
    pub input: ModelFormat,
    pub output: ModelFormat,
    /// Distinct meshes and their placements (instancing is kept across the conversion).
    pub meshes: usize,
    pub instances: usize,
    /// Triangles as rendered, counting every placement.
    pub triangles: usize,
    pub import_time: Duration,
    pub export_time: Duration,
}

/// Reads a model in any supported format (detected from the content).
pub fn import_model(
    bytes: &[u8],
    limits: &ImportLimits,
) -> Result<(Scene, ModelFormat), ModelConvertError> {
    import_model_with(bytes, &NoResources, limits)
}

/// Reads a model, with the files a `.gltf` refers to (buffers, images) or a USD stage names
/// (layers, textures) read from `resources` (the model's folder for a local file).
pub fn import_model_with(
    bytes: &[u8],
    resources: &dyn Resources,
    limits: &ImportLimits,
) -> Result<(Scene, ModelFormat), ModelConvertError> {
    let input = ModelFormat::sniff(bytes).ok_or(ModelConvertError::UnknownInput)?;
    let scene = match input {
        ModelFormat::Glb => import_gltf_with_resources(bytes, resources, limits)?,
        ModelFormat::Usda | ModelFormat::Usdc | ModelFormat::Usdz => {
            // The layers and textures the stage names, read from `resources`, travel with it as
            // one package.
            let bundled =
                lightbox_scene::usd_files::bundle_usd(None, bytes.to_vec(), resources, limits)?;
            // In a child process where the binary serves one (the convert worker does).
            lightbox_scene::usd_isolate::import_usd(&bundled, limits)?
        }
    };
    Ok((scene, input))
}

/// Writes a scene in `output` format with the default USD layout (instanceable references).
pub fn export_model(scene: &Scene, output: ModelFormat) -> Result<Vec<u8>, ModelConvertError> {
    let options = UsdWriteOptions::default();
    Ok(match output {
        ModelFormat::Glb => export_glb(scene),
        ModelFormat::Usda => export_usda_with(scene, &options).into_bytes(),
        ModelFormat::Usdz => export_usdz_with(scene, &options),
        ModelFormat::Usdc => return Err(ModelConvertError::UnsupportedOutput(output)),
    })
}

/// Converts model bytes to `output`: GLB → USD (usda, usdz), USD (usda, usdc, usdz) → GLB, and
/// any same-family re-encode (USD → usdz packaging, GLB → GLB normalisation).
pub fn convert_model(
    bytes: &[u8],
    output: ModelFormat,
    limits: &ImportLimits,
) -> Result<ConvertedModel, ModelConvertError> {
    convert_model_with(bytes, &NoResources, output, limits)
}

/// [`convert_model`] for a model whose `.gltf` refers to files that `resources` holds (the
/// model's folder for `lightbox convert`).
pub fn convert_model_with(
    bytes: &[u8],
    resources: &dyn Resources,
    output: ModelFormat,
    limits: &ImportLimits,
) -> Result<ConvertedModel, ModelConvertError> {
    if output == ModelFormat::Usdc {
        return Err(ModelConvertError::UnsupportedOutput(output));
    }
    let t0 = Instant::now();
    let (scene, input) = import_model_with(bytes, resources, limits)?;
    let import_time = t0.elapsed();
    let t1 = Instant::now();
    let out = export_model(&scene, output)?;
    Ok(ConvertedModel {
        bytes: out,
        input,
        output,
        meshes: scene.meshes.len(),
        instances: scene.instances.len(),
        triangles: scene.instanced_triangle_count(),
        import_time,
        export_time: t1.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_testmodels as testmodels;

    #[test]
    fn glb_to_usda_to_glb_keeps_the_model() {
        let glb = testmodels::bearing_glb(0.03);
        let limits = ImportLimits::default();
        let usda = convert_model(&glb, ModelFormat::Usda, &limits).unwrap();
        assert_eq!(usda.input, ModelFormat::Glb);
        assert!(usda.bytes.starts_with(b"#usda 1.0"));
        let back = convert_model(&usda.bytes, ModelFormat::Glb, &limits).unwrap();
        assert_eq!(back.input, ModelFormat::Usda);
        assert_eq!(back.triangles, usda.triangles);
        assert_eq!(back.instances, usda.instances);
        assert_eq!(back.meshes, usda.meshes);
    }

    #[test]
    fn formats_from_extensions_and_content() {
        assert_eq!(ModelFormat::from_extension("USDZ"), Some(ModelFormat::Usdz));
        assert_eq!(ModelFormat::from_extension("gltf"), Some(ModelFormat::Glb));
        assert_eq!(ModelFormat::from_extension("png"), None);
        assert_eq!(ModelFormat::sniff(b"glTF\x02"), Some(ModelFormat::Glb));
        assert_eq!(ModelFormat::sniff(b"\x89PNG"), None);
    }

    #[test]
    fn bad_inputs_and_outputs_are_errors() {
        let limits = ImportLimits::default();
        assert!(matches!(
            convert_model(b"\x89PNG", ModelFormat::Glb, &limits),
            Err(ModelConvertError::UnknownInput)
        ));
        let glb = testmodels::bearing_glb(0.02);
        assert!(matches!(
            convert_model(&glb, ModelFormat::Usdc, &limits),
            Err(ModelConvertError::UnsupportedOutput(ModelFormat::Usdc))
        ));
        assert!(matches!(
            convert_model(
                b"#usda 1.0\ndef Xform \"A\" {}\n",
                ModelFormat::Glb,
                &limits
            ),
            Err(ModelConvertError::Usd(UsdImportError::Empty))
        ));
    }
}
