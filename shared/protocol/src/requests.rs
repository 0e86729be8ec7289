//! Per-function request types: the `request` field of a job envelope. JSON Schemas generated
//! from these types live in `infra/schemas/` and a test keeps them in sync.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::Function;
use crate::key::ObjectKey;
use crate::queue::Queue;

/// A request type with the function that serves it and the queue it goes on: what lets a
/// handler ask for another job by its typed request (the runtime's `JobContext::run_first`)
/// without naming a subject or a function by hand.
pub trait JobRequest: Serialize {
    /// The function that runs this request.
    const FUNCTION: Function;
    /// The work queue this request goes on (for renders, the one routing rule).
    fn queue(&self) -> Queue;
}

impl JobRequest for ConvertRequest {
    const FUNCTION: Function = Function::Convert;
    fn queue(&self) -> Queue {
        Queue::Convert
    }
}

impl JobRequest for RenderRequest {
    const FUNCTION: Function = Function::Render;
    fn queue(&self) -> Queue {
        RenderRequest::queue(self)
    }
}

impl JobRequest for TessellateRequest {
    const FUNCTION: Function = Function::Tessellate;
    fn queue(&self) -> Queue {
        Queue::Tessellate
    }
}

/// Output formats of the convert function: images (from PNG, JPEG or WebP input) and models
/// (from GLB or USD input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Webp,
    Png,
    Jpeg,
    /// Binary glTF.
    Glb,
    /// USD as text, written by Lightbox's own writer.
    Usda,
    /// USD package (uncompressed zip with the usda first).
    Usdz,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Webp => "webp",
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Glb => "glb",
            ImageFormat::Usda => "usda",
            ImageFormat::Usdz => "usdz",
        }
    }

    /// Whether this is a 3D model format (GLB/USD) rather than an image.
    pub fn is_model(self) -> bool {
        matches!(
            self,
            ImageFormat::Glb | ImageFormat::Usda | ImageFormat::Usdz
        )
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Webp => "image/webp",
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Glb => "model/gltf-binary",
            ImageFormat::Usda => "model/vnd.usda",
            ImageFormat::Usdz => "model/vnd.usdz+zip",
        }
    }

    /// The format an output file name asks for (`.webp`, `.png`, `.jpg`/`.jpeg`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "webp" => Some(ImageFormat::Webp),
            "png" => Some(ImageFormat::Png),
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            "glb" => Some(ImageFormat::Glb),
            "usda" | "usd" => Some(ImageFormat::Usda),
            "usdz" => Some(ImageFormat::Usdz),
            _ => None,
        }
    }
}

/// A target size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Size {
    type Err = String;
    /// Parses `WxH`, for example `512x512`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (w, h) = text
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("size {text:?} is not WxH (for example 512x512)"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("size {text:?} is not WxH"))
        };
        let size = Size {
            width: parse(w)?,
            height: parse(h)?,
        };
        if size.width == 0 || size.height == 0 {
            return Err(format!("size {text:?} must be at least 1x1"));
        }
        Ok(size)
    }
}

/// `convert`: one image in, one image out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertRequest {
    /// Key of the input image (PNG, JPEG or WebP).
    pub input: ObjectKey,
    /// Where to write the result. When absent, a key is derived from the input's content and
    /// the parameters (`outputs/convert/<hash>.<ext>`), so a repeated job writes the same object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ObjectKey>,
    /// Output format.
    pub format: ImageFormat,
    /// Lossy quality 1-100 for WebP and JPEG (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// Lossless WebP (ignored by PNG, which is always lossless, and refused for JPEG).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossless: bool,
    /// Resize to exactly this size before encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Size>,
}

/// Tessellation quality for STEP input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TessellationParams {
    /// Maximum chordal deviation in metres (default: relative to the model's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_deflection: Option<f64>,
    /// Maximum angle between neighbouring facet normals, in radians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angular_deflection: Option<f64>,
}

/// `render`: one model in, one or more images of it out (imported once per job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The model: `.glb`, `.usd`/`.usda`/`.usdc`/`.usdz`, or `.step`/`.stp`.
    pub model: ObjectKey,
    /// A USD master of this model; when it exists it is rendered directly, with no tessellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_master: Option<ObjectKey>,
    /// What to render.
    pub outputs: Vec<RenderOutputRequest>,
    /// `native` (default for the queue) or `cycles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Tessellation parameters, for STEP models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tessellation: Option<TessellationParams>,
    /// Set on the continuation a tessellate job publishes: the job that made the GLB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tessellated_by: Option<String>,
}

/// One output of a render job: the renderer's spec (`width`, `height`, `samples`, `seed`,
/// `format`, `studio`, `turntable`, `denoise`, ...) plus where to put it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
// The renderer refuses unknown spec fields, so the schema does too (`widht` is an error).
#[schemars(extend("additionalProperties" = false))]
pub struct RenderOutputRequest {
    /// Key for the image (for a turntable, the animated WebP; frames go under `<key stem>/`).
    /// When absent, a key is derived from the model's content and the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ObjectKey>,
    /// The render spec, checked by the render function. Kept as JSON here (the renderer owns
    /// the type); its schema is the mirror in [`crate::render_spec`].
    #[serde(flatten)]
    #[schemars(with = "crate::render_spec::RenderSpecSchema")]
    pub spec: serde_json::Map<String, serde_json::Value>,
}

impl RenderOutputRequest {
    /// The larger image edge this output asks for (the renderer's default is 512).
    pub fn max_dimension(&self) -> u32 {
        // Saturating: an absurd edge (2^32 and up) is still "large" and routes to render.heavy,
        // whose limits then refuse it with a message naming the limit.
        let edge = |name: &str| {
            self.spec
                .get(name)
                .and_then(|v| v.as_u64())
                .map_or(512, |v| u32::try_from(v).unwrap_or(u32::MAX))
        };
        edge("width").max(edge("height"))
    }

    /// Whether this output is a turntable.
    pub fn is_turntable(&self) -> bool {
        self.spec.get("turntable").is_some_and(|t| !t.is_null())
    }
}

impl RenderRequest {
    /// The queue this job belongs on: stills with max(width, height) <= 1024 go to
    /// `render.light`; larger stills and every turntable go to `render.heavy`.
    pub fn queue(&self) -> crate::queue::Queue {
        let max_dimension = self
            .outputs
            .iter()
            .map(RenderOutputRequest::max_dimension)
            .max()
            .unwrap_or(0);
        let turntable = self.outputs.iter().any(RenderOutputRequest::is_turntable);
        crate::queue::Queue::for_render(max_dimension, turntable)
    }
}

/// `tessellate`: a STEP file (AP203/AP214/AP242) in, an instanced GLB out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TessellateRequest {
    /// Key of the input STEP file.
    pub input: ObjectKey,
    /// Where to write a copy of the GLB. The GLB is always stored under its content-derived
    /// cache key (`cache/tessellate/<sha256>.glb`), which the result names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ObjectKey>,
    /// Largest distance between mesh and surface, in metres (default: 0.1 % of the model's
    /// bounding-box diagonal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_deflection: Option<f64>,
    /// Largest angle between neighbouring facets, in radians (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angular_deflection: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_requests_route_by_size_and_turntable() {
        let request = |outputs: serde_json::Value| -> RenderRequest {
            serde_json::from_value(serde_json::json!({"model": "models/a.glb", "outputs": outputs}))
                .unwrap()
        };
        let cases = [
            (
                serde_json::json!([{"width": 512, "height": 512}]),
                "render.light",
            ),
            (
                serde_json::json!([{"width": 1024, "height": 768}]),
                "render.light",
            ),
            (serde_json::json!([{}]), "render.light"),
            (
                serde_json::json!([{"width": 1025, "height": 512}]),
                "render.heavy",
            ),
            (
                serde_json::json!([{"width": 2048, "height": 2048}, {"width": 512, "height": 512}]),
                "render.heavy",
            ),
            (
                serde_json::json!([{"width": 256, "height": 256, "turntable": {"frames": 12}}]),
                "render.heavy",
            ),
            // An edge past u32 saturates instead of wrapping to a thumbnail.
            (
                serde_json::json!([{"width": 4294967296u64}]),
                "render.heavy",
            ),
        ];
        for (outputs, queue) in cases {
            assert_eq!(
                request(outputs.clone()).queue().as_str(),
                queue,
                "{outputs}"
            );
        }
        let with_key =
            request(serde_json::json!([{"output": "outputs/x.png", "width": 64, "seed": 3}]));
        assert_eq!(
            with_key.outputs[0].output.as_ref().unwrap().as_str(),
            "outputs/x.png"
        );
        assert_eq!(with_key.outputs[0].spec["seed"], 3);
        assert!(!with_key.outputs[0].spec.contains_key("output"));
    }

    #[test]
    fn every_request_goes_to_a_queue_of_its_own_function() {
        fn check<R: JobRequest>(request: &R) {
            assert_eq!(request.queue().function(), R::FUNCTION);
        }
        let key = ObjectKey::new("inputs/a.step").unwrap();
        check(&TessellateRequest {
            input: key.clone(),
            output: None,
            linear_deflection: None,
            angular_deflection: None,
        });
        check(&ConvertRequest {
            input: key.clone(),
            output: None,
            format: ImageFormat::Png,
            quality: None,
            lossless: false,
            resize: None,
        });
        let heavy: RenderRequest = serde_json::from_value(
            serde_json::json!({"model": "models/a.glb", "outputs": [{"width": 2048}]}),
        )
        .unwrap();
        check(&heavy);
        assert_eq!(JobRequest::queue(&heavy), Queue::RenderHeavy);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "512x256".parse::<Size>().unwrap(),
            Size {
                width: 512,
                height: 256
            }
        );
        assert!("512".parse::<Size>().is_err());
        assert!("0x5".parse::<Size>().is_err());
    }

    #[test]
    fn convert_request_refuses_unknown_fields_and_bad_keys() {
        let ok = serde_json::json!({"input": "inputs/a.png", "format": "webp", "quality": 80});
        assert!(serde_json::from_value::<ConvertRequest>(ok).is_ok());
        let unknown = serde_json::json!({"input": "inputs/a.png", "format": "webp", "colour": 1});
        assert!(serde_json::from_value::<ConvertRequest>(unknown).is_err());
        let traversal = serde_json::json!({"input": "../x", "format": "webp"});
        let err = serde_json::from_value::<ConvertRequest>(traversal).unwrap_err();
        assert!(err.to_string().contains(".."));
    }
}
