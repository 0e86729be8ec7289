//! What each function reports in its `succeeded` event's `result`: schema types for publishers
//! (`infra/schemas/*.result.schema.json`). The functions build these objects themselves (they
//! hold the values), so these types describe the wire form and `tests/schemas.rs` checks real
//! jobs' results against the committed schemas. Fields may be added later: consumers should
//! ignore fields they do not know, so the schemas allow them.

use schemars::JsonSchema;

/// A convert job's result: an image conversion or a model conversion.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ConvertResult {
    Image(ConvertImageResult),
    Model(ConvertModelResult),
}

/// An image converted (PNG, JPEG or WebP in; WebP, PNG or JPEG out).
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ConvertImageResult {
    /// Key of the written image.
    output: String,
    /// Format written (`webp`, `png`, `jpeg`).
    format: String,
    width: u32,
    height: u32,
    /// Size of the written object.
    bytes: u64,
    input_bytes: u64,
    /// Format the input was decoded as.
    input_format: String,
}

/// A model converted (GLB to USDA/USDZ, USD to GLB).
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ConvertModelResult {
    output: String,
    /// Format written (`glb`, `usda`, `usdz`).
    format: String,
    bytes: u64,
    input_bytes: u64,
    meshes: u64,
    instances: u64,
    triangles: u64,
}

/// A render job's result.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct RenderResult {
    /// How the model was read (`glb`, `usd`, or a STEP file through the tessellation cache).
    source: String,
    /// Engine that rendered (`native`, `cycles`).
    engine: String,
    /// Key of the model rendered (for STEP, the tessellated GLB).
    model: String,
    /// One per requested output, in order.
    outputs: Vec<RenderOutputResult>,
}

/// One rendered output.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct RenderOutputResult {
    /// Key of the image (for a turntable, the animated WebP).
    key: String,
    bytes: u64,
    width: u32,
    height: u32,
    /// Samples per pixel rendered.
    samples: u32,
    /// Where the sample count came from (the spec or the sample policy).
    sample_source: String,
    /// Denoiser that ran (`oidn`, `builtin`, `off`).
    denoiser: String,
    /// Frames rendered (1 for a still).
    frames: u32,
    /// Keys of a turntable's frames (empty for a still).
    frame_keys: Vec<String>,
    /// Millions of camera rays per second.
    mrays_per_s: f64,
}

/// A tessellate job's result.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct TessellateResult {
    /// Key of the GLB the job was asked to write.
    output: String,
    /// Key of the content-addressed cache entry.
    cache_key: String,
    /// `hit` or `miss`.
    cache: String,
    parts: u64,
    instances: u64,
    triangles: u64,
    /// Triangles of the distinct meshes (null on a cache hit).
    distinct_triangles: Option<u64>,
    glb_bytes: u64,
    input_bytes: u64,
    /// Deflections used (null on a cache hit).
    linear_deflection_m: Option<f64>,
    angular_deflection: Option<f64>,
    /// `read`, `mesh` and `write` in milliseconds.
    timings_ms: std::collections::BTreeMap<String, f64>,
}
