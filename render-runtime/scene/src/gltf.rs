//! glTF 2.0 / GLB import into a [`Scene`].
//!
//! The JSON is parsed and validated by the `gltf` crate; accessors are decoded here, by hand, so
//! that every byte range and vertex index is checked and bad input becomes an [`ImportError`]
//! naming the node, mesh or accessor instead of a panic.

use std::collections::HashMap;

use gltf::accessor::{DataType, Dimensions};
use gltf::mesh::Mode;

use super::budget::{MemoryEstimate, OverBudget, VertexExtras};
use super::{Material, Mesh, Scene};
use crate::math::{Affine, Vec3};

/// The default memory budget of an import: 8 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 8 << 30;

/// Size guards that make hostile or broken files fail cleanly instead of exhausting memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImportLimits {
    /// Maximum triangles counted over all instances (what the renderer will trace).
    pub max_instanced_triangles: usize,
    /// Maximum triangles stored over all distinct meshes.
    pub max_unique_triangles: usize,
    /// Maximum vertices of one accessor.
    pub max_vertices_per_accessor: usize,
    /// Maximum mesh placements.
    pub max_instances: usize,
    /// Maximum node hierarchy depth.
    pub max_node_depth: usize,
    /// Maximum texels of one texture.
    pub max_texture_pixels: u64,
    /// Most bytes the imported scene and its acceleration structure may need, estimated from the
    /// counts the file declares before anything large is allocated (see [`super::budget`]).
    pub memory_budget: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_instanced_triangles: 50_000_000,
            max_unique_triangles: 20_000_000,
            max_vertices_per_accessor: 20_000_000,
            max_instances: 1_000_000,
            max_node_depth: 128,
            max_texture_pixels: 8192 * 8192,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

/// Why a glTF file could not be imported. Each variant says where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("invalid gltf document")]
    Parse {
        #[source]
        source: gltf::Error,
    },
    #[error("invalid gltf document: {reason}")]
    Invalid { reason: String },
    #[error("buffer {buffer}: {reason}")]
    Buffer { buffer: usize, reason: String },
    #[error("mesh {mesh} primitive {primitive}: accessor {accessor}: {reason}")]
    Accessor {
        mesh: String,
        primitive: usize,
        accessor: usize,
        reason: String,
    },
    #[error("mesh {mesh} primitive {primitive}: {reason}")]
    Primitive {
        mesh: String,
        primitive: usize,
        reason: String,
    },
    #[error("mesh {mesh} primitive {primitive}: vertex index {index} out of range for {vertex_count} vertices")]
    IndexOutOfRange {
        mesh: String,
        primitive: usize,
        index: u64,
        vertex_count: usize,
    },
    #[error("node {node}: {reason}")]
    Node { node: String, reason: String },
    #[error("image {image}: {reason}")]
    Image { image: usize, reason: String },
    /// The file lists an extension in `extensionsRequired` that the importer does not implement.
    #[error("the model requires the glTF extension {extension}, which is not supported")]
    UnsupportedExtension { extension: String },
    /// A file or data URI the model refers to could not be had (`referrer` is "buffer 0",
    /// "image 2", ...; the source names the file).
    #[error("{referrer}")]
    Resource {
        referrer: String,
        #[source]
        source: crate::resources::ResourceError,
    },
    /// A compressed buffer view (`EXT_meshopt_compression`) that does not decode.
    #[error("buffer view {view}: {reason}")]
    BufferView { view: usize, reason: String },
    #[error("model too large: {what} {count} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    #[error("model has no triangles to render")]
    Empty,
}

fn label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("#{index} '{n}'"),
        None => format!("#{index}"),
    }
}

/// Imports a `.glb` or self-contained `.gltf` (data URIs only) from memory with default limits.
pub fn import_gltf(bytes: &[u8]) -> Result<Scene, ImportError> {
    import_gltf_with_limits(bytes, &ImportLimits::default())
}

/// Imports a `.glb` or self-contained `.gltf` (embedded buffers, data URIs) from memory under
/// the given size guards. A reference to an external file fails, naming the file.
pub fn import_gltf_with_limits(bytes: &[u8], limits: &ImportLimits) -> Result<Scene, ImportError> {
    import_gltf_with_resources(bytes, &crate::resources::NoResources, limits)
}

/// Imports a `.glb` or `.gltf`, reading the buffers and images it refers to by URI from
/// `resources` (the file's folder, or files fetched from beside it), under the size guards.
/// Meshopt- and Draco-compressed geometry is decoded (see [`super::gltf_decode`]).
pub fn import_gltf_with_resources(
    bytes: &[u8],
    resources: &dyn crate::resources::Resources,
    limits: &ImportLimits,
) -> Result<Scene, ImportError> {
    // The gltf crate's validation indexes some arrays without checking them (a POSITION accessor
    // index past the accessor list panics; found by `cargo fuzz`): a panic there is a bad file.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<_, ImportError> {
            // External files, data URIs and compressed views become plain embedded buffers.
            let lowered = super::gltf_decode::lower(bytes, resources, limits)?;
            let document = super::gltf_material::parse_document(&lowered.json)?;
            Ok((document, lowered.buffers))
        },
    ));
    let (document, buffers) = match parsed {
        Ok(result) => result?,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Err(ImportError::Invalid {
                reason: format!("the glTF reader failed: {reason}"),
            });
        }
    };
    for (i, (buffer, data)) in document.buffers().zip(&buffers).enumerate() {
        if data.0.len() < buffer.length() {
            return Err(ImportError::Buffer {
                buffer: i,
                reason: format!(
                    "declares {} bytes but holds {}",
                    buffer.length(),
                    data.0.len()
                ),
            });
        }
    }

    // First pass, over the JSON only: where every mesh is placed, and what the scene will cost.
    let placements = collect_placements(&document, limits)?;
    let materials = super::gltf_material::convert_materials(&document)?;
    let texture_uses = super::gltf_material::texture_uses(&document, &materials);
    check_declared_size(
        &document,
        &buffers,
        &placements,
        &materials,
        &texture_uses,
        limits,
    )?;

    let mut scene = Scene::default();
    let imported = super::gltf_material::decode_textures(
        &document,
        &buffers,
        materials,
        &texture_uses,
        limits,
    )?;
    scene.textures = imported.textures;
    scene.materials = imported.materials;
    let default_material = scene.materials.len() as u32;
    scene.materials.push(Material {
        name: Some("default".into()),
        metallic: 0.0,
        roughness: 0.5,
        ..Material::default()
    });

    // Meshes: one of ours per glTF mesh, primitives concatenated, converted on first use so
    // unreferenced meshes cost nothing.
    let mut mesh_map: HashMap<usize, Option<usize>> = HashMap::new();
    let mut unique_triangles = 0usize;
    let mut instanced_triangles = 0u64;
    for placement in placements {
        let gmesh = document
            .meshes()
            .nth(placement.mesh)
            .expect("placements name meshes of this document");
        let entry = match mesh_map.get(&placement.mesh) {
            Some(e) => *e,
            None => {
                let converted = convert_mesh(
                    &gmesh,
                    &buffers,
                    default_material,
                    scene.materials.len(),
                    limits,
                )?;
                let idx = match converted {
                    Some(mut mesh) => {
                        add_tangents(&mut mesh, &scene.materials);
                        unique_triangles += mesh.triangles.len();
                        if unique_triangles > limits.max_unique_triangles {
                            return Err(ImportError::TooLarge {
                                what: "distinct triangles",
                                count: unique_triangles as u64,
                                limit: limits.max_unique_triangles as u64,
                            });
                        }
                        Some(scene.add_mesh(mesh))
                    }
                    None => None,
                };
                mesh_map.insert(placement.mesh, idx);
                idx
            }
        };
        let Some(mesh_idx) = entry else { continue };
        // A degenerate (zero-scale) placement cannot be seen; skipping it is what viewers do.
        let Some(inst) = super::Instance::new(mesh_idx, placement.world, placement.name) else {
            continue;
        };
        instanced_triangles += scene.meshes[mesh_idx].triangles.len() as u64;
        if instanced_triangles > limits.max_instanced_triangles as u64 {
            return Err(ImportError::TooLarge {
                what: "instanced triangles",
                count: instanced_triangles,
                limit: limits.max_instanced_triangles as u64,
            });
        }
        scene.instances.push(inst);
    }

    if scene.instances.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(scene)
}

/// One node that places a mesh, with its world transform.
struct Placement {
    mesh: usize,
    world: Affine,
    name: Option<String>,
}

/// Walks the node hierarchy (default scene, else the first, else every unreferenced node) and
/// lists the mesh placements, checking depth, visit and instance limits on the way.
fn collect_placements(
    document: &gltf::Document,
    limits: &ImportLimits,
) -> Result<Vec<Placement>, ImportError> {
    let roots: Vec<gltf::Node> = match document
        .default_scene()
        .or_else(|| document.scenes().next())
    {
        Some(s) => s.nodes().collect(),
        None => {
            let mut is_child = vec![false; document.nodes().len()];
            for n in document.nodes() {
                for c in n.children() {
                    is_child[c.index()] = true;
                }
            }
            document.nodes().filter(|n| !is_child[n.index()]).collect()
        }
    };
    let visit_limit = limits.max_instances.saturating_mul(4).max(1024);
    let mut placements = Vec::new();
    let mut stack: Vec<(gltf::Node, Affine, usize)> = roots
        .into_iter()
        .rev()
        .map(|n| (n, Affine::IDENTITY, 0))
        .collect();
    let mut visited_nodes = 0usize;
    while let Some((node, parent, depth)) = stack.pop() {
        let node_label = || label(node.index(), node.name());
        if depth > limits.max_node_depth {
            return Err(ImportError::Node {
                node: node_label(),
                reason: format!(
                    "hierarchy deeper than {} levels (cycle?)",
                    limits.max_node_depth
                ),
            });
        }
        visited_nodes += 1;
        if visited_nodes > visit_limit {
            return Err(ImportError::TooLarge {
                what: "node visits",
                count: visited_nodes as u64,
                limit: visit_limit as u64,
            });
        }
        let local = match node.transform() {
            gltf::scene::Transform::Matrix { matrix } => Affine::from_cols_4x4(matrix),
            gltf::scene::Transform::Decomposed {
                translation,
                rotation,
                scale,
            } => Affine::from_trs(translation, rotation, scale),
        };
        let world = parent.mul(&local);
        if !world.is_finite() {
            return Err(ImportError::Node {
                node: node_label(),
                reason: "transform is not finite".into(),
            });
        }
        if let Some(mesh) = node.mesh() {
            if placements.len() >= limits.max_instances {
                return Err(ImportError::TooLarge {
                    what: "instances",
                    count: placements.len() as u64 + 1,
                    limit: limits.max_instances as u64,
                });
            }
            placements.push(Placement {
                mesh: mesh.index(),
                world,
                name: node.name().map(str::to_owned),
            });
        }
        for child in node.children() {
            stack.push((child, world, depth + 1));
        }
    }
    Ok(placements)
}

/// Vertices and triangles a mesh declares (triangle primitives only), from accessor counts.
fn declared_counts(mesh: &gltf::Mesh) -> (u64, u64) {
    let (mut vertices, mut triangles) = (0u64, 0u64);
    for prim in mesh.primitives() {
        let Some(positions) = prim.get(&gltf::Semantic::Positions) else {
            continue;
        };
        let corners = prim.indices().map_or(positions.count(), |a| a.count()) as u64;
        let prim_triangles = match prim.mode() {
            Mode::Triangles => corners / 3,
            Mode::TriangleStrip | Mode::TriangleFan => corners.saturating_sub(2),
            _ => continue,
        };
        vertices = vertices.saturating_add(positions.count() as u64);
        triangles = triangles.saturating_add(prim_triangles);
    }
    (vertices, triangles)
}

/// Per-vertex data beyond position, normal and UV 0 that a mesh will store: a second UV set
/// when a primitive has TEXCOORD_1, tangents when a primitive has TANGENT or a normal map.
fn declared_extras(mesh: &gltf::Mesh, materials: &[Material]) -> VertexExtras {
    let mut extras = VertexExtras::default();
    for prim in mesh.primitives() {
        extras.second_uv_set |= prim.get(&gltf::Semantic::TexCoords(1)).is_some();
        extras.tangents |= prim.get(&gltf::Semantic::Tangents).is_some()
            || prim
                .material()
                .index()
                .and_then(|i| materials.get(i))
                .is_some_and(needs_tangents);
    }
    extras
}

/// A file tangent with unit xyz and a handedness of exactly ±1; a broken one becomes zero,
/// which the renderer treats as "no tangent" (it then builds a frame from the normal alone).
fn sanitize_tangent(t: [f32; 4]) -> [f32; 4] {
    let v = Vec3::new(t[0], t[1], t[2]);
    let n = v.normalized();
    if !n.is_finite() || n == Vec3::ZERO {
        return [0.0; 4];
    }
    [n.x, n.y, n.z, if t[3] < 0.0 { -1.0 } else { 1.0 }]
}

/// Generates tangents for a mesh without them when one of its materials has a normal map,
/// from that normal map's UV set (see [`crate::tangents`]).
fn add_tangents(mesh: &mut Mesh, materials: &[Material]) {
    if mesh.tangents.is_some() {
        return;
    }
    let mut used: Vec<u32> = mesh.triangle_materials.clone();
    used.sort_unstable();
    used.dedup();
    let uv_set = used.iter().find_map(|&m| {
        let material = materials.get(m as usize)?;
        material
            .normal_texture
            .or_else(|| material.clearcoat.and_then(|c| c.normal_texture))
            .map(|t| t.uv_set)
    });
    if let Some(set) = uv_set {
        mesh.generate_tangents(set);
    }
}

/// Whether a material samples a normal map (and so its meshes need tangents).
fn needs_tangents(material: &Material) -> bool {
    material.normal_texture.is_some()
        || material
            .clearcoat
            .as_ref()
            .is_some_and(|c| c.normal_texture.is_some())
}

/// Checks the scene the file declares against the triangle, texture and memory limits before
/// any mesh or texture is decoded: counts come from accessors, texture sizes from image headers.
fn check_declared_size(
    document: &gltf::Document,
    buffers: &[gltf::buffer::Data],
    placements: &[Placement],
    materials: &[Material],
    texture_uses: &[super::gltf_material::ImageUse],
    limits: &ImportLimits,
) -> Result<(), ImportError> {
    let meshes: Vec<gltf::Mesh> = document.meshes().collect();
    let mut counts: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut estimate = MemoryEstimate::default();
    let mut instanced = 0u64;
    for placement in placements {
        let (vertices, triangles) = *counts.entry(placement.mesh).or_insert_with(|| {
            let c = declared_counts(&meshes[placement.mesh]);
            estimate.add_mesh(c.0, c.1);
            estimate.add_vertex_extras(c.0, declared_extras(&meshes[placement.mesh], materials));
            c
        });
        if vertices > limits.max_vertices_per_accessor as u64 * 16 {
            return Err(ImportError::TooLarge {
                what: "vertices in one mesh",
                count: vertices,
                limit: limits.max_vertices_per_accessor as u64 * 16,
            });
        }
        instanced = instanced.saturating_add(triangles);
        if instanced > limits.max_instanced_triangles as u64 {
            return Err(ImportError::TooLarge {
                what: "instanced triangles",
                count: instanced,
                limit: limits.max_instanced_triangles as u64,
            });
        }
        estimate.add_placement(placement.mesh, triangles);
    }
    let unique: u64 = counts.values().map(|c| c.1).sum();
    if unique > limits.max_unique_triangles as u64 {
        return Err(ImportError::TooLarge {
            what: "distinct triangles",
            count: unique,
            limit: limits.max_unique_triangles as u64,
        });
    }
    // Each (image, use) pair becomes its own texture: an image used both as colour and as
    // data is decoded twice.
    let images: Vec<gltf::Image> = document.images().collect();
    for image_use in texture_uses {
        let image = &images[image_use.image];
        let (width, height) = image_dimensions(document, image, buffers)?;
        let pixels = width as u64 * height as u64;
        if pixels > limits.max_texture_pixels {
            return Err(ImportError::TooLarge {
                what: "texture pixels",
                count: pixels,
                limit: limits.max_texture_pixels,
            });
        }
        estimate.add_texture(width, height);
    }
    estimate.check(limits.memory_budget)?;
    Ok(())
}

/// The encoded bytes of an embedded image (a buffer view; external files are not read). Reads
/// the JSON itself: the gltf crate's `Image::source` panics on an image with neither a buffer
/// view nor a URI, or a view without a MIME type (found by `cargo fuzz`).
pub(crate) fn image_bytes<'b>(
    document: &gltf::Document,
    image: &gltf::Image,
    buffers: &'b [gltf::buffer::Data],
) -> Result<&'b [u8], ImportError> {
    let error = |reason: &str| ImportError::Image {
        image: image.index(),
        reason: reason.into(),
    };
    let json = document
        .as_json()
        .images
        .get(image.index())
        .ok_or_else(|| error("is missing"))?;
    match (&json.buffer_view, &json.uri) {
        (Some(view), _) => {
            let view = document
                .views()
                .nth(view.value())
                .ok_or_else(|| error("its buffer view is missing"))?;
            let data = buffers
                .get(view.buffer().index())
                .ok_or_else(|| error("its buffer is missing"))?;
            view.offset()
                .checked_add(view.length())
                .and_then(|end| data.0.get(view.offset()..end))
                .ok_or_else(|| error("its buffer view lies outside the buffer"))
        }
        (None, Some(_)) => Err(error(
            "refers to an external file; embed images in the GLB (buffer views)",
        )),
        (None, None) => Err(error("has neither a buffer view nor a URI")),
    }
}

pub(crate) fn image_reader(bytes: &[u8]) -> Option<image::ImageReader<std::io::Cursor<&[u8]>>> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .filter(|r| {
            matches!(
                r.format(),
                Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP)
            )
        })
}

/// Width and height from the image header, without decoding pixels.
fn image_dimensions(
    document: &gltf::Document,
    image: &gltf::Image,
    buffers: &[gltf::buffer::Data],
) -> Result<(u32, u32), ImportError> {
    let error = |reason: String| ImportError::Image {
        image: image.index(),
        reason,
    };
    let bytes = image_bytes(document, image, buffers)?;
    let reader = image_reader(bytes).ok_or_else(|| error("is not a PNG, JPEG or WebP".into()))?;
    reader
        .into_dimensions()
        .map_err(|e| error(format!("unreadable header: {e}")))
}

/// Where in the file an accessor is being read, for error messages.
struct Site<'a> {
    mesh: &'a str,
    primitive: usize,
}

impl Site<'_> {
    fn accessor_error(&self, accessor: usize, reason: impl Into<String>) -> ImportError {
        ImportError::Accessor {
            mesh: self.mesh.to_owned(),
            primitive: self.primitive,
            accessor,
            reason: reason.into(),
        }
    }
}

/// Returns the bytes of each element of a non-sparse accessor, after checking every range.
fn accessor_elements<'b>(
    accessor: &gltf::Accessor,
    buffers: &'b [gltf::buffer::Data],
    site: &Site,
    max_count: usize,
) -> Result<(Vec<&'b [u8]>, usize), ImportError> {
    let idx = accessor.index();
    if accessor.sparse().is_some() {
        return Err(site.accessor_error(idx, "sparse accessors are not supported"));
    }
    let view = accessor
        .view()
        .ok_or_else(|| site.accessor_error(idx, "has no buffer view"))?;
    let count = accessor.count();
    if count > max_count {
        return Err(ImportError::TooLarge {
            what: "accessor elements",
            count: count as u64,
            limit: max_count as u64,
        });
    }
    let elem_size = accessor.size();
    let stride = view.stride().unwrap_or(elem_size);
    if stride < elem_size {
        return Err(site.accessor_error(
            idx,
            format!("byte stride {stride} is smaller than element size {elem_size}"),
        ));
    }
    let data = buffers
        .get(view.buffer().index())
        .ok_or_else(|| site.accessor_error(idx, "buffer missing"))?;
    let view_end = view
        .offset()
        .checked_add(view.length())
        .filter(|&end| end <= data.0.len())
        .ok_or_else(|| {
            site.accessor_error(
                idx,
                format!(
                    "buffer view {} (offset {}, length {}) exceeds buffer of {} bytes",
                    view.index(),
                    view.offset(),
                    view.length(),
                    data.0.len()
                ),
            )
        })?;
    let view_bytes = &data.0[view.offset()..view_end];
    if count == 0 {
        return Ok((Vec::new(), elem_size));
    }
    let needed = accessor
        .offset()
        .checked_add(stride.saturating_mul(count - 1))
        .and_then(|v| v.checked_add(elem_size))
        .unwrap_or(usize::MAX);
    if needed > view_bytes.len() {
        return Err(site.accessor_error(
            idx,
            format!(
                "{count} elements of {elem_size} bytes (stride {stride}, offset {}) need {needed} bytes but buffer view {} has {}",
                accessor.offset(),
                view.index(),
                view_bytes.len()
            ),
        ));
    }
    let elements = (0..count)
        .map(|i| {
            let start = accessor.offset() + i * stride;
            &view_bytes[start..start + elem_size]
        })
        .collect();
    Ok((elements, elem_size))
}

fn read_f32(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Reads component `i` of an element as a float: FLOAT as is, integer types as glTF (and
/// `KHR_mesh_quantization`) define them, normalized (`c / max`, clamped at -1 for signed types)
/// or not (the integer's value).
fn component_reader(data_type: DataType, normalized: bool) -> Option<fn(&[u8], usize) -> f32> {
    Some(match (data_type, normalized) {
        (DataType::F32, _) => read_f32,
        (DataType::I8, true) => |b, i| (b[i] as i8 as f32 / 127.0).max(-1.0),
        (DataType::I8, false) => |b, i| b[i] as i8 as f32,
        (DataType::U8, true) => |b, i| b[i] as f32 / 255.0,
        (DataType::U8, false) => |b, i| b[i] as f32,
        (DataType::I16, true) => {
            |b, i| (i16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as f32 / 32767.0).max(-1.0)
        }
        (DataType::I16, false) => |b, i| i16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as f32,
        (DataType::U16, true) => {
            |b, i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as f32 / 65535.0
        }
        (DataType::U16, false) => |b, i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as f32,
        (DataType::U32, _) => return None,
    })
}

/// Reads an attribute of `N` components as floats, from FLOAT or (with `KHR_mesh_quantization`)
/// normalized or integer components. `what` names the attribute in errors.
fn read_attribute<const N: usize>(
    accessor: &gltf::Accessor,
    buffers: &[gltf::buffer::Data],
    site: &Site,
    limits: &ImportLimits,
    what: &str,
) -> Result<Vec<[f32; N]>, ImportError> {
    if accessor.dimensions().multiplicity() != N {
        return Err(site.accessor_error(
            accessor.index(),
            format!(
                "{what} must have {N} components, found {:?}",
                accessor.dimensions()
            ),
        ));
    }
    let convert =
        component_reader(accessor.data_type(), accessor.normalized()).ok_or_else(|| {
            site.accessor_error(
                accessor.index(),
                format!(
                    "unsupported {what} component type {:?}",
                    accessor.data_type()
                ),
            )
        })?;
    let (elements, _) =
        accessor_elements(accessor, buffers, site, limits.max_vertices_per_accessor)?;
    Ok(elements
        .iter()
        .map(|e| std::array::from_fn(|c| convert(e, c)))
        .collect())
}

fn read_vec3_f32(
    accessor: &gltf::Accessor,
    buffers: &[gltf::buffer::Data],
    site: &Site,
    limits: &ImportLimits,
) -> Result<Vec<[f32; 3]>, ImportError> {
    let out = read_attribute::<3>(accessor, buffers, site, limits, "a VEC3 attribute")?;
    if let Some(i) = out.iter().position(|v| !v.iter().all(|c| c.is_finite())) {
        return Err(site.accessor_error(accessor.index(), format!("element {i} is not finite")));
    }
    Ok(out)
}

fn read_uv(
    accessor: &gltf::Accessor,
    buffers: &[gltf::buffer::Data],
    site: &Site,
    limits: &ImportLimits,
) -> Result<Vec<[f32; 2]>, ImportError> {
    if accessor.dimensions() != Dimensions::Vec2 {
        return Err(site.accessor_error(accessor.index(), "TEXCOORD must be VEC2"));
    }
    let uvs = read_attribute::<2>(accessor, buffers, site, limits, "TEXCOORD")?;
    Ok(uvs
        .into_iter()
        .map(|uv| uv.map(|c| if c.is_finite() { c } else { 0.0 }))
        .collect())
}

fn read_indices(
    accessor: &gltf::Accessor,
    buffers: &[gltf::buffer::Data],
    site: &Site,
    limits: &ImportLimits,
) -> Result<Vec<u32>, ImportError> {
    if accessor.dimensions() != Dimensions::Scalar {
        return Err(site.accessor_error(accessor.index(), "indices must be SCALAR"));
    }
    let max = limits.max_unique_triangles.saturating_mul(3);
    let (elements, _) = accessor_elements(accessor, buffers, site, max)?;
    let out = match accessor.data_type() {
        DataType::U8 => elements.iter().map(|e| e[0] as u32).collect(),
        DataType::U16 => elements
            .iter()
            .map(|e| u16::from_le_bytes([e[0], e[1]]) as u32)
            .collect(),
        DataType::U32 => elements
            .iter()
            .map(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]))
            .collect(),
        other => {
            return Err(site.accessor_error(
                accessor.index(),
                format!("unsupported index component type {other:?}"),
            ));
        }
    };
    Ok(out)
}

/// Converts one glTF mesh. Returns `Ok(None)` when it has no triangle primitives (points, lines).
fn convert_mesh(
    gmesh: &gltf::Mesh,
    buffers: &[gltf::buffer::Data],
    default_material: u32,
    material_count: usize,
    limits: &ImportLimits,
) -> Result<Option<Mesh>, ImportError> {
    let mesh_label = label(gmesh.index(), gmesh.name());
    let mut mesh = Mesh {
        name: gmesh.name().map(str::to_owned),
        ..Mesh::default()
    };
    let mut normals: Vec<[f32; 3]> = Vec::new();
    let mut uvs: Vec<[f32; 2]> = Vec::new();
    let mut any_normals = false;
    let mut any_uvs = false;
    // The second UV set is filled like the first; tangents are kept only when every primitive
    // has them (exporters write them for all or none), else they are generated later.
    let mut uvs1: Vec<[f32; 2]> = Vec::new();
    let mut any_uvs1 = false;
    let mut tangents: Vec<[f32; 4]> = Vec::new();
    let mut all_tangents = true;
    // A mesh whose primitives all lack normals is shaded flat (glTF's rule). When only some
    // primitives have normals, the others get area-weighted smooth normals so the arrays stay
    // aligned with the positions.
    for (prim_idx, prim) in gmesh.primitives().enumerate() {
        let site = Site {
            mesh: &mesh_label,
            primitive: prim_idx,
        };
        let mode = prim.mode();
        if !matches!(
            mode,
            Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
        ) {
            continue;
        }
        let pos_accessor =
            prim.get(&gltf::Semantic::Positions)
                .ok_or_else(|| ImportError::Primitive {
                    mesh: mesh_label.clone(),
                    primitive: prim_idx,
                    reason: "has no POSITION attribute".into(),
                })?;
        let positions = read_vec3_f32(&pos_accessor, buffers, &site, limits)?;
        let prim_normals = match prim.get(&gltf::Semantic::Normals) {
            Some(a) => {
                let n = read_vec3_f32(&a, buffers, &site, limits)?;
                if n.len() != positions.len() {
                    return Err(
                        site.accessor_error(a.index(), "NORMAL count differs from POSITION count")
                    );
                }
                Some(n)
            }
            None => None,
        };
        let prim_uvs = match prim.get(&gltf::Semantic::TexCoords(0)) {
            Some(a) => {
                let t = read_uv(&a, buffers, &site, limits)?;
                if t.len() != positions.len() {
                    return Err(site.accessor_error(
                        a.index(),
                        "TEXCOORD_0 count differs from POSITION count",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let prim_uvs1 = match prim.get(&gltf::Semantic::TexCoords(1)) {
            Some(a) => {
                let t = read_uv(&a, buffers, &site, limits)?;
                if t.len() != positions.len() {
                    return Err(site.accessor_error(
                        a.index(),
                        "TEXCOORD_1 count differs from POSITION count",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let prim_tangents = match prim.get(&gltf::Semantic::Tangents) {
            Some(a) => {
                let t = read_attribute::<4>(&a, buffers, &site, limits, "TANGENT")?;
                if t.len() != positions.len() {
                    return Err(
                        site.accessor_error(a.index(), "TANGENT count differs from POSITION count")
                    );
                }
                Some(t)
            }
            None => None,
        };
        let raw_indices: Vec<u32> = match prim.indices() {
            Some(a) => read_indices(&a, buffers, &site, limits)?,
            None => (0..positions.len() as u32).collect(),
        };
        if let Some(&bad) = raw_indices.iter().find(|&&i| i as usize >= positions.len()) {
            return Err(ImportError::IndexOutOfRange {
                mesh: mesh_label.clone(),
                primitive: prim_idx,
                index: bad as u64,
                vertex_count: positions.len(),
            });
        }
        let local_tris: Vec<[u32; 3]> = match mode {
            Mode::Triangles => raw_indices
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect(),
            Mode::TriangleStrip => (2..raw_indices.len())
                .map(|i| {
                    if i % 2 == 0 {
                        [raw_indices[i - 2], raw_indices[i - 1], raw_indices[i]]
                    } else {
                        [raw_indices[i - 1], raw_indices[i - 2], raw_indices[i]]
                    }
                })
                .collect(),
            _ => (2..raw_indices.len())
                .map(|i| [raw_indices[0], raw_indices[i - 1], raw_indices[i]])
                .collect(),
        };
        let material = match prim.material().index() {
            Some(i) if i < material_count => i as u32,
            _ => default_material,
        };

        if mesh.triangles.len() + local_tris.len() > limits.max_unique_triangles {
            return Err(ImportError::TooLarge {
                what: "triangles in one mesh",
                count: (mesh.triangles.len() + local_tris.len()) as u64,
                limit: limits.max_unique_triangles as u64,
            });
        }
        let base = mesh.positions.len();
        if base + positions.len() > u32::MAX as usize {
            return Err(ImportError::TooLarge {
                what: "vertices in one mesh",
                count: (base + positions.len()) as u64,
                limit: u32::MAX as u64,
            });
        }
        // Fill normals/uvs of earlier primitives lazily so arrays stay aligned with positions.
        match prim_normals {
            Some(n) => {
                if !any_normals {
                    normals = generate_smooth_normals(&mesh.positions, &mesh.triangles);
                    any_normals = true;
                }
                normals.extend(n.into_iter().map(|v| {
                    let v = Vec3::from_array(v).normalized();
                    v.to_array()
                }));
            }
            None => {
                if any_normals {
                    let start = mesh.positions.len();
                    let mut p = mesh.positions.clone();
                    p.extend_from_slice(&positions);
                    let shifted: Vec<[u32; 3]> = local_tris
                        .iter()
                        .map(|t| t.map(|i| i + start as u32))
                        .collect();
                    let gen = generate_smooth_normals(&p, &shifted);
                    normals.extend_from_slice(&gen[start..]);
                }
            }
        }
        match prim_uvs {
            Some(t) => {
                if !any_uvs {
                    uvs = vec![[0.0, 0.0]; mesh.positions.len()];
                    any_uvs = true;
                }
                uvs.extend(t);
            }
            None => {
                if any_uvs {
                    uvs.extend(std::iter::repeat_n([0.0, 0.0], positions.len()));
                }
            }
        }
        match prim_uvs1 {
            Some(t) => {
                if !any_uvs1 {
                    uvs1 = vec![[0.0, 0.0]; mesh.positions.len()];
                    any_uvs1 = true;
                }
                uvs1.extend(t);
            }
            None => {
                if any_uvs1 {
                    uvs1.extend(std::iter::repeat_n([0.0, 0.0], positions.len()));
                }
            }
        }
        match prim_tangents {
            Some(t) if all_tangents => tangents.extend(t.into_iter().map(sanitize_tangent)),
            _ => all_tangents = false,
        }
        mesh.positions.extend(positions);
        mesh.triangles
            .extend(local_tris.iter().map(|t| t.map(|i| i + base as u32)));
        mesh.triangle_materials
            .extend(std::iter::repeat_n(material, local_tris.len()));
    }
    if mesh.triangles.is_empty() {
        return Ok(None);
    }
    mesh.normals = any_normals.then_some(normals);
    mesh.uvs = any_uvs.then_some(uvs);
    mesh.uvs1 = any_uvs1.then_some(uvs1);
    mesh.tangents = (all_tangents && tangents.len() == mesh.positions.len()).then_some(tangents);
    mesh.update_bounds();
    Ok(Some(mesh))
}

/// Area-weighted vertex normals, used when a primitive without normals shares a mesh with
/// primitives that have them. Whole meshes without normals are shaded flat instead (glTF's rule).
pub fn generate_smooth_normals(positions: &[[f32; 3]], triangles: &[[u32; 3]]) -> Vec<[f32; 3]> {
    let mut acc = vec![Vec3::ZERO; positions.len()];
    for t in triangles {
        let [a, b, c] = t.map(|i| Vec3::from_array(positions[i as usize]));
        let n = (b - a).cross(c - a);
        for &i in t {
            acc[i as usize] += n;
        }
    }
    acc.into_iter()
        .map(|n| {
            let n = n.normalized();
            if n == Vec3::ZERO {
                [0.0, 1.0, 0.0]
            } else {
                n.to_array()
            }
        })
        .collect()
}
