//! The first stage of a glTF import: turns any glTF file (GLB, `.gltf` with external files or
//! data URIs, meshopt- or Draco-compressed) into a plain, self-contained document with its
//! buffers in memory, which the accessor reader in [`super::gltf`] then imports.
//!
//! The stage works on the JSON itself, before the `gltf` crate sees it:
//! - buffers with a URI are read through a [`Resources`] (the model's folder, the files a
//!   function fetched, or none), data URIs are decoded; external images become buffer views;
//! - `EXT_meshopt_compression` / `KHR_meshopt_compression` views are decoded by meshoptimizer
//!   into new buffers, and their fallback buffers are never read;
//! - `KHR_draco_mesh_compression` primitives are decoded by Draco into new buffers, and their
//!   accessors point at them (floats, `u32` indices);
//! - these extensions and `KHR_mesh_quantization` (integer attributes, read by the accessor
//!   reader) are then no longer required.
//!
//! Sizes are checked before anything is read or decoded: the file count and the bytes the
//! document declares (external buffers' `byteLength`, decompressed views, Draco accessors)
//! against [`ResourceLimits`], then each file's size against what is left before it is read.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use super::gltf::{ImportError, ImportLimits};
use crate::draco::DracoGeometry;
use crate::meshopt_decode;
use crate::resources::{
    data_uri_decoded_len, decode_data_uri, is_data_uri, ResourceError, ResourceLimits,
    ResourcePath, Resources,
};

/// Extensions this stage decodes, or that the accessor reader implements; a file that requires
/// them imports.
pub const DECODED_EXTENSIONS: &[&str] = &[
    "KHR_draco_mesh_compression",
    "EXT_meshopt_compression",
    "KHR_meshopt_compression",
    "KHR_mesh_quantization",
];

const MESHOPT_EXTENSIONS: &[&str] = &["EXT_meshopt_compression", "KHR_meshopt_compression"];
const DRACO: &str = "KHR_draco_mesh_compression";

/// A plain document: JSON whose buffers are `buffers` (same order, no URIs to resolve).
pub(crate) struct Lowered<'a> {
    pub json: Cow<'a, [u8]>,
    pub buffers: Vec<gltf::buffer::Data>,
    /// The file required `KHR_mesh_quantization` (integer attributes remain in the buffers).
    pub quantized: bool,
}

/// Where the bytes of a buffer or image come from.
#[derive(Clone, Debug)]
enum Source {
    /// The GLB's binary chunk.
    Bin,
    /// A `data:` URI (the URI text).
    Data(String),
    /// A file beside the model.
    File(ResourcePath),
    /// A meshopt fallback buffer: never read, its views are decoded instead.
    Fallback,
}

/// What the JSON says must be read, before anything is.
struct Plan {
    buffers: Vec<Source>,
    /// Images that textures use and that have a URI: (image index, source).
    images: Vec<(usize, Source)>,
}

impl Plan {
    /// Distinct files beside the model, in first-use order.
    fn files(&self) -> Vec<ResourcePath> {
        let mut seen = BTreeSet::new();
        self.buffers
            .iter()
            .chain(self.images.iter().map(|(_, s)| s))
            .filter_map(|s| match s {
                Source::File(p) if seen.insert(p.clone()) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

fn parse_error(source: gltf::Error) -> ImportError {
    ImportError::Parse { source }
}

fn invalid(reason: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        reason: reason.into(),
    }
}

fn resource_error(referrer: String, source: ResourceError) -> ImportError {
    ImportError::Resource { referrer, source }
}

/// The JSON and binary chunk of a GLB, or the JSON of a `.gltf`.
/// A file's JSON and, for a GLB, its binary chunk.
type Chunks<'a> = (Cow<'a, [u8]>, Option<Cow<'a, [u8]>>);

fn split(bytes: &[u8]) -> Result<Chunks<'_>, ImportError> {
    if bytes.starts_with(b"glTF") {
        let glb = gltf::binary::Glb::from_slice(bytes).map_err(parse_error)?;
        Ok((glb.json, glb.bin))
    } else {
        Ok((Cow::Borrowed(bytes), None))
    }
}

fn parse_json(json: &[u8]) -> Result<Value, ImportError> {
    let root: Value =
        serde_json::from_slice(json).map_err(|e| parse_error(gltf::Error::Deserialize(e)))?;
    if !root.is_object() {
        return Err(invalid("the document is not a JSON object"));
    }
    Ok(root)
}

fn array<'v>(root: &'v Value, key: &str) -> &'v [Value] {
    root.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn index(value: Option<&Value>) -> Option<usize> {
    value.and_then(Value::as_u64).map(|v| v as usize)
}

/// The meshopt extension object of a buffer view or buffer, under either name.
fn meshopt_ext(object: &Value) -> Option<&Value> {
    let extensions = object.get("extensions")?;
    MESHOPT_EXTENSIONS
        .iter()
        .find_map(|name| extensions.get(*name))
}

/// Images that some texture uses (its `source`, or an extension's, such as `EXT_texture_webp`).
fn used_images(root: &Value) -> BTreeSet<usize> {
    let mut used = BTreeSet::new();
    for texture in array(root, "textures") {
        used.extend(index(texture.get("source")));
        if let Some(extensions) = texture.get("extensions").and_then(Value::as_object) {
            used.extend(extensions.values().filter_map(|e| index(e.get("source"))));
        }
    }
    used
}

fn source_of(uri: &str) -> Result<Source, ResourceError> {
    if is_data_uri(uri) {
        Ok(Source::Data(uri.to_owned()))
    } else {
        ResourcePath::from_uri(uri).map(Source::File)
    }
}

fn plan(root: &Value, has_bin: bool) -> Result<Plan, ImportError> {
    let mut buffers = Vec::new();
    for (i, buffer) in array(root, "buffers").iter().enumerate() {
        let fallback = meshopt_ext(buffer)
            .and_then(|e| e.get("fallback"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let source = match buffer.get("uri").and_then(Value::as_str) {
            _ if fallback => Source::Fallback,
            Some(uri) => source_of(uri).map_err(|e| resource_error(format!("buffer {i}"), e))?,
            None if i == 0 && has_bin => Source::Bin,
            None => {
                return Err(ImportError::Buffer {
                    buffer: i,
                    reason: "has no uri and the file has no binary chunk for it".into(),
                })
            }
        };
        buffers.push(source);
    }
    let images_json = array(root, "images");
    let mut images = Vec::new();
    for i in used_images(root) {
        let Some(image) = images_json.get(i) else {
            continue; // a dangling texture source is the texture importer's error to report
        };
        if image.get("bufferView").is_some() {
            continue;
        }
        if let Some(uri) = image.get("uri").and_then(Value::as_str) {
            let source = source_of(uri).map_err(|e| resource_error(format!("image {i}"), e))?;
            images.push((i, source));
        }
    }
    Ok(Plan { buffers, images })
}

/// The external files a glTF model needs beside it (buffers and the images its textures use),
/// deduplicated and checked (no `..`, no absolute paths, no URLs), without reading any. A
/// function fetches these from the store before importing from memory.
pub fn external_files(bytes: &[u8]) -> Result<Vec<ResourcePath>, ImportError> {
    let (json, bin) = split(bytes)?;
    let root = parse_json(&json)?;
    Ok(plan(&root, bin.is_some())?.files())
}

/// Bytes held for resources so far, against the limits.
struct Budget {
    limits: ResourceLimits,
    used: u64,
}

impl Budget {
    fn remaining(&self) -> u64 {
        self.limits.max_total_bytes.saturating_sub(self.used)
    }

    fn take(&mut self, bytes: u64) -> Result<(), ResourceError> {
        let needed = self.used.saturating_add(bytes);
        if needed > self.limits.max_total_bytes {
            return Err(ResourceError::TotalTooLarge {
                needed,
                limit: self.limits.max_total_bytes,
            });
        }
        self.used = needed;
        Ok(())
    }
}

fn element_components(type_: &str) -> Option<u64> {
    Some(match type_ {
        "SCALAR" => 1,
        "VEC2" => 2,
        "VEC3" => 3,
        "VEC4" | "MAT2" => 4,
        "MAT3" => 9,
        "MAT4" => 16,
        _ => return None,
    })
}

/// Bytes the document declares it will need from resources and decoders: external buffers
/// (their `byteLength`), data URIs, decompressed meshopt views and Draco-decoded accessors.
fn declared_bytes(root: &Value, plan: &Plan) -> u64 {
    let buffers_json = array(root, "buffers");
    let mut total = 0u64;
    for (i, source) in plan.buffers.iter().enumerate() {
        total = total.saturating_add(match source {
            Source::File(_) => buffers_json[i]
                .get("byteLength")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            Source::Data(uri) => data_uri_decoded_len(uri),
            Source::Bin | Source::Fallback => 0,
        });
    }
    for (_, source) in &plan.images {
        if let Source::Data(uri) = source {
            total = total.saturating_add(data_uri_decoded_len(uri));
        }
    }
    for view in array(root, "bufferViews") {
        if let Some(ext) = meshopt_ext(view) {
            let count = ext.get("count").and_then(Value::as_u64).unwrap_or(0);
            let stride = ext.get("byteStride").and_then(Value::as_u64).unwrap_or(0);
            total = total.saturating_add(count.saturating_mul(stride));
        }
    }
    let accessors = array(root, "accessors");
    for mesh in array(root, "meshes") {
        for prim in array(mesh, "primitives") {
            let Some(ext) = prim.get("extensions").and_then(|e| e.get(DRACO)) else {
                continue;
            };
            let mut used: Vec<usize> = index(prim.get("indices")).into_iter().collect();
            if let Some(names) = ext.get("attributes").and_then(Value::as_object) {
                used.extend(
                    names
                        .keys()
                        .filter_map(|name| index(prim.get("attributes")?.get(name))),
                );
            }
            for accessor in used.iter().filter_map(|&a| accessors.get(a)) {
                let count = accessor.get("count").and_then(Value::as_u64).unwrap_or(0);
                let components = accessor
                    .get("type")
                    .and_then(Value::as_str)
                    .and_then(element_components)
                    .unwrap_or(16);
                total = total.saturating_add(count.saturating_mul(components).saturating_mul(4));
            }
        }
    }
    total
}

/// Reads one buffer or image source.
fn read_source(
    source: &Source,
    resources: &dyn Resources,
    budget: &mut Budget,
) -> Result<Vec<u8>, ResourceError> {
    match source {
        Source::Data(uri) => {
            budget.take(data_uri_decoded_len(uri))?;
            Ok(decode_data_uri(uri)?.bytes)
        }
        Source::File(path) => {
            let bytes = resources.read(path, budget.remaining())?;
            budget.take(bytes.len() as u64)?;
            Ok(bytes)
        }
        Source::Bin | Source::Fallback => Ok(Vec::new()),
    }
}

fn image_mime_type(bytes: &[u8], source: &Source) -> String {
    if bytes.starts_with(b"\x89PNG") {
        "image/png".into()
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        "image/jpeg".into()
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp".into()
    } else if let Source::Data(uri) = source {
        decode_data_uri_media_type(uri)
    } else {
        "application/octet-stream".into()
    }
}

fn decode_data_uri_media_type(uri: &str) -> String {
    uri[5..]
        .split([';', ','])
        .next()
        .filter(|m| !m.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// Lowers `bytes` (GLB or `.gltf`) to a plain document, reading what it refers to from
/// `resources`.
pub(crate) fn lower<'a>(
    bytes: &'a [u8],
    resources: &dyn Resources,
    limits: &ImportLimits,
) -> Result<Lowered<'a>, ImportError> {
    let (json, bin) = split(bytes)?;
    let mut root = parse_json(&json)?;
    let plan = plan(&root, bin.is_some())?;
    let resource_limits = ResourceLimits::for_import(limits);
    let files = plan.files();
    if files.len() > resource_limits.max_files {
        return Err(resource_error(
            "external files".into(),
            ResourceError::TooManyFiles {
                count: files.len(),
                limit: resource_limits.max_files,
            },
        ));
    }
    let declared = declared_bytes(&root, &plan);
    if declared > resource_limits.max_total_bytes {
        return Err(resource_error(
            "external files".into(),
            ResourceError::TotalTooLarge {
                needed: declared,
                limit: resource_limits.max_total_bytes,
            },
        ));
    }
    let mut budget = Budget {
        limits: resource_limits,
        used: 0,
    };
    let mut changed = false;

    // Buffers, in their own order; the binary chunk is copied (it is the input's own memory).
    let mut buffers = Vec::with_capacity(plan.buffers.len());
    let mut file_cache: HashMap<ResourcePath, usize> = HashMap::new();
    for (i, source) in plan.buffers.iter().enumerate() {
        let data = match source {
            Source::Bin => bin.as_deref().unwrap_or_default().to_vec(),
            other => read_source(other, resources, &mut budget)
                .map_err(|e| resource_error(format!("buffer {i}"), e))?,
        };
        let declared = root["buffers"][i]
            .get("byteLength")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if !matches!(source, Source::Fallback) && (data.len() as u64) < declared {
            return Err(ImportError::Buffer {
                buffer: i,
                reason: format!("declares {declared} bytes but holds {}", data.len()),
            });
        }
        if let Source::File(path) = source {
            file_cache.insert(path.clone(), i);
        }
        let buffer = &mut root["buffers"][i];
        if let Some(object) = buffer.as_object_mut() {
            if !matches!(source, Source::Bin) {
                object.remove("uri");
                changed = true;
            }
            if matches!(source, Source::Fallback) {
                // No view may read it: a view that still does finds it empty.
                object.insert("byteLength".into(), json!(0));
            }
        }
        buffers.push(gltf::buffer::Data(data));
    }

    // Images with URIs become buffer views of new buffers (one per distinct file).
    for (i, source) in &plan.images {
        let buffer_index = match source {
            Source::File(path) if file_cache.contains_key(path) => file_cache[path],
            _ => {
                let data = read_source(source, resources, &mut budget)
                    .map_err(|e| resource_error(format!("image {i}"), e))?;
                buffers.push(gltf::buffer::Data(data));
                if let Source::File(path) = source {
                    file_cache.insert(path.clone(), buffers.len() - 1);
                }
                buffers.len() - 1
            }
        };
        let length = buffers[buffer_index].0.len();
        let mime = image_mime_type(&buffers[buffer_index].0, source);
        let view = push_view(&mut root, buffer_index, length, None);
        add_buffer_entry_if_new(&mut root, &buffers);
        if let Some(image) = root["images"][*i].as_object_mut() {
            image.remove("uri");
            image.insert("bufferView".into(), json!(view));
            image.insert("mimeType".into(), json!(mime));
        }
        changed = true;
    }

    changed |= decode_meshopt_views(&mut root, &mut buffers, &mut budget)?;
    changed |= decode_draco_primitives(&mut root, &mut buffers, &mut budget, limits)?;

    let quantized = array(&root, "extensionsRequired")
        .iter()
        .any(|e| e.as_str() == Some("KHR_mesh_quantization"));
    if let Some(required) = root
        .get_mut("extensionsRequired")
        .and_then(Value::as_array_mut)
    {
        let before = required.len();
        required.retain(|e| !e.as_str().is_some_and(|e| DECODED_EXTENSIONS.contains(&e)));
        changed |= required.len() != before;
    }

    let json = if changed {
        Cow::Owned(serde_json::to_vec(&root).expect("a JSON value serialises"))
    } else {
        json
    };
    Ok(Lowered {
        json,
        buffers,
        quantized,
    })
}

/// Packs a glTF file and everything it refers to into one self-contained GLB: external buffers
/// and images read from `resources` (under the same limits as an import), data URIs decoded,
/// meshopt and Draco geometry decompressed, all buffers merged into the binary chunk.
///
/// This is how a function hands a multi-file `.gltf` to its engines: they take one model's
/// bytes (and the Cycles engine one file), so the files beside it are bundled at the edge.
pub fn pack_glb(
    bytes: &[u8],
    resources: &dyn Resources,
    limits: &ImportLimits,
) -> Result<Vec<u8>, ImportError> {
    let lowered = lower(bytes, resources, limits)?;
    let mut root = parse_json(&lowered.json)?;
    let mut bin: Vec<u8> = Vec::new();
    let mut starts = Vec::with_capacity(lowered.buffers.len());
    for data in &lowered.buffers {
        // Eight-byte starts keep every accessor's alignment (at most four) in the merged chunk.
        bin.resize(bin.len().next_multiple_of(8), 0);
        starts.push(bin.len());
        bin.extend_from_slice(&data.0);
    }
    let n_views = array(&root, "bufferViews").len();
    for v in 0..n_views {
        let view = &root["bufferViews"][v];
        let buffer = index(view.get("buffer"))
            .filter(|&b| b < lowered.buffers.len())
            .ok_or_else(|| ImportError::BufferView {
                view: v,
                reason: "names no buffer of the file".into(),
            })?;
        let offset = view.get("byteOffset").and_then(Value::as_u64).unwrap_or(0);
        let length = view.get("byteLength").and_then(Value::as_u64).unwrap_or(0);
        let held = lowered.buffers[buffer].0.len() as u64;
        if offset.saturating_add(length) > held {
            return Err(ImportError::BufferView {
                view: v,
                reason: format!(
                    "offset {offset} and length {length} exceed buffer {buffer} of {held} bytes"
                ),
            });
        }
        let object = root["bufferViews"][v]
            .as_object_mut()
            .expect("a view with a buffer is an object");
        object.insert("buffer".into(), json!(0));
        object.insert("byteOffset".into(), json!(starts[buffer] as u64 + offset));
    }
    let object = root.as_object_mut().expect("checked to be an object");
    if bin.is_empty() && n_views == 0 {
        object.remove("buffers");
    } else {
        object.insert("buffers".into(), json!([{ "byteLength": bin.len() }]));
    }
    // What was decoded is no longer used; quantized attributes still need their extension.
    if let Some(used) = object
        .get_mut("extensionsUsed")
        .and_then(Value::as_array_mut)
    {
        used.retain(|e| {
            !e.as_str()
                .is_some_and(|e| e != "KHR_mesh_quantization" && DECODED_EXTENSIONS.contains(&e))
        });
    }
    if lowered.quantized {
        let required = ensure_array(&mut root, "extensionsRequired");
        required.push(json!("KHR_mesh_quantization"));
    }
    let json = serde_json::to_vec(&root).expect("a JSON value serialises");
    write_glb(&json, &bin)
}

/// A GLB container: header, JSON chunk padded with spaces, binary chunk padded with zeros.
fn write_glb(json: &[u8], bin: &[u8]) -> Result<Vec<u8>, ImportError> {
    let json_len = json.len().next_multiple_of(4);
    let bin_len = bin.len().next_multiple_of(4);
    let bin_chunk = if bin.is_empty() { 0 } else { 8 + bin_len };
    let total = 12 + 8 + json_len + bin_chunk;
    let total32 = u32::try_from(total).map_err(|_| ImportError::TooLarge {
        what: "bytes in the packed GLB",
        count: total as u64,
        limit: u32::MAX as u64,
    })?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&total32.to_le_bytes());
    out.extend_from_slice(&(json_len as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(json);
    out.resize(out.len() + json_len - json.len(), b' ');
    if !bin.is_empty() {
        out.extend_from_slice(&(bin_len as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(bin);
        out.resize(out.len() + bin_len - bin.len(), 0);
    }
    Ok(out)
}

/// Appends JSON buffer entries for buffers added to `buffers` since the JSON was last updated.
fn add_buffer_entry_if_new(root: &mut Value, buffers: &[gltf::buffer::Data]) {
    let list = ensure_array(root, "buffers");
    while list.len() < buffers.len() {
        let length = buffers[list.len()].0.len();
        list.push(json!({ "byteLength": length }));
    }
}

fn ensure_array<'v>(root: &'v mut Value, key: &str) -> &'v mut Vec<Value> {
    let object = root.as_object_mut().expect("checked to be an object");
    let entry = object
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    entry.as_array_mut().expect("made an array")
}

/// Adds a buffer view over `length` bytes from the start of buffer `buffer`; returns its index.
fn push_view(root: &mut Value, buffer: usize, length: usize, stride: Option<&Value>) -> usize {
    let mut view = Map::new();
    view.insert("buffer".into(), json!(buffer));
    view.insert("byteLength".into(), json!(length));
    if let Some(stride) = stride {
        view.insert("byteStride".into(), stride.clone());
    }
    let views = ensure_array(root, "bufferViews");
    views.push(Value::Object(view));
    views.len() - 1
}

/// The bytes of buffer view `view` as the buffers stand now.
fn view_bytes<'b>(
    root: &Value,
    buffers: &'b [gltf::buffer::Data],
    view: usize,
) -> Result<&'b [u8], String> {
    let json = array(root, "bufferViews")
        .get(view)
        .ok_or_else(|| format!("buffer view {view} does not exist"))?;
    let buffer = index(json.get("buffer")).ok_or("has no buffer")?;
    let offset = json.get("byteOffset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let length = json.get("byteLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let data = buffers
        .get(buffer)
        .ok_or_else(|| format!("buffer {buffer} does not exist"))?;
    offset
        .checked_add(length)
        .and_then(|end| data.0.get(offset..end))
        .ok_or_else(|| {
            format!(
                "buffer view {view} (offset {offset}, length {length}) exceeds buffer {buffer} of {} bytes",
                data.0.len()
            )
        })
}

fn decode_meshopt_views(
    root: &mut Value,
    buffers: &mut Vec<gltf::buffer::Data>,
    budget: &mut Budget,
) -> Result<bool, ImportError> {
    let mut changed = false;
    let n_views = array(root, "bufferViews").len();
    for v in 0..n_views {
        let Some(ext) = meshopt_ext(&root["bufferViews"][v]).cloned() else {
            continue;
        };
        let error = |reason: String| ImportError::BufferView { view: v, reason };
        let field = |name: &str| ext.get(name).and_then(Value::as_u64);
        let (Some(buffer), Some(length), Some(stride), Some(count)) = (
            field("buffer"),
            field("byteLength"),
            field("byteStride"),
            field("count"),
        ) else {
            return Err(error(
                "meshopt compression needs buffer, byteLength, byteStride and count".into(),
            ));
        };
        let offset = field("byteOffset").unwrap_or(0);
        let mode_text = ext.get("mode").and_then(Value::as_str).unwrap_or_default();
        let mode = meshopt_decode::Mode::parse(mode_text)
            .ok_or_else(|| error(format!("unknown meshopt mode {mode_text:?}")))?;
        let filter_text = ext.get("filter").and_then(Value::as_str).unwrap_or("NONE");
        let filter = meshopt_decode::Filter::parse(filter_text)
            .ok_or_else(|| error(format!("unknown meshopt filter {filter_text:?}")))?;
        let data = buffers.get(buffer as usize).ok_or_else(|| {
            error(format!(
                "compressed data is in buffer {buffer}, which does not exist"
            ))
        })?;
        let encoded = offset
            .checked_add(length)
            .and_then(|end| data.0.get(offset as usize..end as usize))
            .ok_or_else(|| {
                error(format!(
                    "compressed data (offset {offset}, length {length}) exceeds buffer {buffer} of {} bytes",
                    data.0.len()
                ))
            })?;
        let decoded_len = count.saturating_mul(stride);
        budget
            .take(decoded_len)
            .map_err(|e| resource_error(format!("buffer view {v}"), e))?;
        let decoded =
            meshopt_decode::decode(encoded, count as usize, stride as usize, mode, filter)
                .map_err(error)?;
        buffers.push(gltf::buffer::Data(decoded));
        let new_buffer = buffers.len() - 1;
        add_buffer_entry_if_new(root, buffers);
        let old = root["bufferViews"][v].clone();
        let mut view = Map::new();
        view.insert("buffer".into(), json!(new_buffer));
        view.insert("byteLength".into(), json!(decoded_len));
        for key in ["byteStride", "target", "name"] {
            if let Some(value) = old.get(key) {
                view.insert(key.into(), value.clone());
            }
        }
        root["bufferViews"][v] = Value::Object(view);
        changed = true;
    }
    Ok(changed)
}

fn mesh_label(mesh: &Value, index: usize) -> String {
    match mesh.get("name").and_then(Value::as_str) {
        Some(name) => format!("#{index} '{name}'"),
        None => format!("#{index}"),
    }
}

/// Points an accessor at a new, tightly packed view of `component_type` values.
fn retarget_accessor(root: &mut Value, accessor: usize, view: usize, component_type: u32) {
    if let Some(object) = root["accessors"][accessor].as_object_mut() {
        object.insert("bufferView".into(), json!(view));
        object.insert("componentType".into(), json!(component_type));
        object.remove("byteOffset");
        object.remove("normalized");
        object.remove("sparse");
    }
}

const FLOAT: u32 = 5126;
const UNSIGNED_INT: u32 = 5125;

fn decode_draco_primitives(
    root: &mut Value,
    buffers: &mut Vec<gltf::buffer::Data>,
    budget: &mut Budget,
    limits: &ImportLimits,
) -> Result<bool, ImportError> {
    let mut changed = false;
    let mut retargeted: BTreeSet<usize> = BTreeSet::new();
    let n_meshes = array(root, "meshes").len();
    for m in 0..n_meshes {
        let n_prims = array(&root["meshes"][m], "primitives").len();
        for p in 0..n_prims {
            let prim = root["meshes"][m]["primitives"][p].clone();
            let Some(ext) = prim.get("extensions").and_then(|e| e.get(DRACO)) else {
                continue;
            };
            let label = mesh_label(&root["meshes"][m], m);
            let error = |reason: String| ImportError::Primitive {
                mesh: label.clone(),
                primitive: p,
                reason: format!("{DRACO}: {reason}"),
            };
            let view =
                index(ext.get("bufferView")).ok_or_else(|| error("has no bufferView".into()))?;
            let mode = prim.get("mode").and_then(Value::as_u64).unwrap_or(4);
            let want_mesh = match mode {
                4..=6 => true,
                0 => false,
                other => return Err(error(format!("mode {other} cannot be Draco-compressed"))),
            };
            // (glTF attribute name, Draco unique id, accessor index)
            let mut attributes = Vec::new();
            for (name, id) in ext
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let id = id
                    .as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| error(format!("attribute {name} has no Draco id")))?;
                let accessor =
                    index(prim.get("attributes").and_then(|a| a.get(name))).ok_or_else(|| {
                        error(format!(
                            "attribute {name} is compressed but has no accessor"
                        ))
                    })?;
                attributes.push((name.clone(), id, accessor));
            }
            let indices_accessor = index(prim.get("indices"));
            // The accessors as declared, copied before the JSON is changed below.
            let declared: HashMap<usize, Value> = attributes
                .iter()
                .map(|(_, _, a)| *a)
                .chain(indices_accessor)
                .map(|a| {
                    array(root, "accessors")
                        .get(a)
                        .cloned()
                        .map(|json| (a, json))
                        .ok_or_else(|| error(format!("accessor {a} does not exist")))
                })
                .collect::<Result<_, _>>()?;
            let accessor_json =
                |a: usize| -> Result<Value, ImportError> { Ok(declared[&a].clone()) };
            for (_, _, accessor) in &attributes {
                let count = declared[accessor]
                    .get("count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if count > limits.max_vertices_per_accessor as u64 {
                    return Err(ImportError::TooLarge {
                        what: "accessor elements",
                        count,
                        limit: limits.max_vertices_per_accessor as u64,
                    });
                }
            }
            let encoded = view_bytes(root, buffers, view).map_err(error)?.to_vec();
            let geometry = DracoGeometry::decode(&encoded, want_mesh).map_err(error)?;
            let points = geometry.num_points();
            if points > limits.max_vertices_per_accessor {
                return Err(ImportError::TooLarge {
                    what: "decoded Draco points",
                    count: points as u64,
                    limit: limits.max_vertices_per_accessor as u64,
                });
            }

            let mut data: Vec<u8> = Vec::new();
            // (accessor, byte offset, byte length, component type)
            let mut sections: Vec<(usize, usize, usize, u32)> = Vec::new();
            let mut new_indices_accessor = None;
            if want_mesh {
                let indices = geometry.indices().map_err(error)?;
                if indices.len() > limits.max_unique_triangles.saturating_mul(3) {
                    return Err(ImportError::TooLarge {
                        what: "decoded Draco triangles",
                        count: (indices.len() / 3) as u64,
                        limit: limits.max_unique_triangles as u64,
                    });
                }
                budget
                    .take(indices.len() as u64 * 4)
                    .map_err(|e| resource_error(format!("mesh {m} primitive {p}"), e))?;
                let accessor = match indices_accessor {
                    Some(a) => {
                        let declared = accessor_json(a)?
                            .get("count")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        if declared != indices.len() as u64 {
                            return Err(error(format!(
                                "indices accessor {a} declares {declared} indices, the Draco stream holds {}",
                                indices.len()
                            )));
                        }
                        a
                    }
                    None => {
                        let accessors = ensure_array(root, "accessors");
                        accessors.push(json!({
                            "componentType": UNSIGNED_INT,
                            "count": indices.len(),
                            "type": "SCALAR",
                        }));
                        new_indices_accessor = Some(accessors.len() - 1);
                        accessors.len() - 1
                    }
                };
                let start = data.len();
                data.extend(indices.iter().flat_map(|i| i.to_le_bytes()));
                sections.push((accessor, start, data.len() - start, UNSIGNED_INT));
            }
            for (name, id, accessor) in &attributes {
                let json = accessor_json(*accessor)?;
                let declared_count = json.get("count").and_then(Value::as_u64).unwrap_or(0);
                if declared_count != points as u64 {
                    return Err(error(format!(
                        "{name} accessor {accessor} declares {declared_count} elements, the Draco stream holds {points} points"
                    )));
                }
                let (values, components) = geometry.attribute_floats(*id).map_err(error)?;
                let declared_components = json
                    .get("type")
                    .and_then(Value::as_str)
                    .and_then(element_components);
                if declared_components != Some(components as u64) {
                    return Err(error(format!(
                        "{name} accessor {accessor} is {} but Draco attribute {id} has {components} components",
                        json.get("type").and_then(Value::as_str).unwrap_or("untyped")
                    )));
                }
                budget
                    .take(values.len() as u64 * 4)
                    .map_err(|e| resource_error(format!("mesh {m} primitive {p}"), e))?;
                let start = data.len();
                data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                sections.push((*accessor, start, data.len() - start, FLOAT));
            }
            buffers.push(gltf::buffer::Data(data));
            let new_buffer = buffers.len() - 1;
            add_buffer_entry_if_new(root, buffers);
            for (accessor, start, length, component_type) in sections {
                if !retargeted.insert(accessor) {
                    continue; // shared with a primitive decoded before: it already points there
                }
                let views = ensure_array(root, "bufferViews");
                views.push(json!({
                    "buffer": new_buffer,
                    "byteOffset": start,
                    "byteLength": length,
                }));
                let view = views.len() - 1;
                retarget_accessor(root, accessor, view, component_type);
            }
            let prim_json = &mut root["meshes"][m]["primitives"][p];
            if let Some(extensions) = prim_json
                .get_mut("extensions")
                .and_then(Value::as_object_mut)
            {
                extensions.remove(DRACO);
            }
            if want_mesh {
                // Draco decodes strips and fans to a triangle list.
                prim_json["mode"] = json!(4);
            }
            if let Some(a) = new_indices_accessor {
                prim_json["indices"] = json!(a);
            }
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{MemoryResources, NoResources};

    #[test]
    fn external_files_lists_buffers_and_used_images_once_and_refuses_traversal() {
        let gltf = br#"{"asset":{"version":"2.0"},
            "buffers":[{"uri":"a%20b.bin","byteLength":4},{"uri":"data:application/octet-stream;base64,AAAA","byteLength":3}],
            "images":[{"uri":"tex/c.png"},{"uri":"unused.png"},{"uri":"a%20b.bin"}],
            "textures":[{"source":0},{"source":2}]}"#;
        let files: Vec<String> = external_files(gltf)
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(files, ["a b.bin", "tex/c.png"]);
        let bad =
            br#"{"asset":{"version":"2.0"},"buffers":[{"uri":"../secret.bin","byteLength":4}]}"#;
        let err = external_files(bad).unwrap_err();
        assert!(matches!(err, ImportError::Resource { .. }), "{err:?}");
    }

    #[test]
    fn declared_sizes_are_checked_before_any_file_is_read() {
        let gltf =
            br#"{"asset":{"version":"2.0"},"buffers":[{"uri":"big.bin","byteLength":1000000}]}"#;
        let limits = ImportLimits {
            memory_budget: 1000,
            ..ImportLimits::default()
        };
        // NoResources would fail on read: the size check must come first.
        let err = lower(gltf, &NoResources, &limits).err().unwrap();
        let ImportError::Resource { source, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(
                source,
                ResourceError::TotalTooLarge {
                    needed: 1000000,
                    limit: 1000
                }
            ),
            "{source:?}"
        );
    }

    #[test]
    fn external_images_become_buffer_views() {
        let gltf =
            br#"{"asset":{"version":"2.0"},"images":[{"uri":"c.png"}],"textures":[{"source":0}]}"#;
        let mut files = MemoryResources::default();
        files.insert("c.png", b"\x89PNG fake".to_vec());
        let lowered = lower(gltf, &files, &ImportLimits::default()).unwrap();
        let root: Value = serde_json::from_slice(&lowered.json).unwrap();
        assert_eq!(root["images"][0]["bufferView"], json!(0));
        assert_eq!(root["images"][0]["mimeType"], json!("image/png"));
        assert!(root["images"][0].get("uri").is_none());
        assert_eq!(lowered.buffers[0].0, b"\x89PNG fake");
    }
}
