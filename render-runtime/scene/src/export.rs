//! GLB export of a [`Scene`], and the one place that writes (and reads) the GLB container.
//!
//! One glTF mesh per distinct mesh, one node per instance (instancing is kept), materials as
//! metallic-roughness factors with their names, node and mesh names. Byte-identical vertex and
//! index data is written once and shared, so meshes that differ only in material (a part placed
//! once in another colour) share their geometry. [`GlbOptions`] adds what model writers need:
//! a generator name, a root node (the turn from a Z-up model frame to glTF's Y-up) and 16-bit
//! indices where they fit. Material textures are written as PNG images in the binary chunk,
//! baked for the slot glTF reads them in (see [`crate::glb_textures`]).
//!
//! ```
//! use lightbox_scene::export::{export_glb_with, read_glb_container, GlbOptions, RootNode};
//! use lightbox_scene::{math::Affine, Material, Mesh, Scene};
//!
//! let mut scene = Scene::default();
//! scene.add_material(Material::lambertian([0.8, 0.1, 0.1]));
//! let triangle = scene.add_mesh(Mesh {
//!     name: Some("triangle".into()),
//!     positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
//!     triangles: vec![[0, 1, 2]],
//!     ..Mesh::default()
//! });
//! scene.add_instance(triangle, Affine::IDENTITY, Some("first".into()));
//! let options = GlbOptions {
//!     generator: "example".into(),
//!     root: Some(RootNode::z_up_to_y_up()),
//!     ..GlbOptions::default()
//! };
//! let glb = export_glb_with(&scene, &options).unwrap();
//! let chunks = read_glb_container(&glb).unwrap();
//! assert!(chunks.json.starts_with(b"{"));
//! ```

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use super::glb_textures::GlbTextures;
use super::{AlphaMode, Scene};

/// `glTF` magic, container version 2, and the two chunk types.
const GLB_MAGIC: &[u8; 4] = b"glTF";
const GLB_VERSION: u32 = 2;
const CHUNK_JSON: &[u8; 4] = b"JSON";
const CHUNK_BIN: &[u8; 4] = b"BIN\0";
/// The 12-byte header plus two 8-byte chunk headers.
const CONTAINER_OVERHEAD: u64 = 12 + 8 + 8;

/// What a GLB could not hold: its length field is 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the model is larger than a GLB can hold ({bytes} bytes)")]
pub struct GlbTooLarge {
    pub bytes: u64,
}

/// Writes a GLB container: the 12-byte header, the JSON chunk padded with spaces and the binary
/// chunk padded with zeros, each to four bytes. `json` need not be valid JSON (tests write
/// broken documents). The only writer of GLB container bytes in the workspace.
pub fn write_glb_container(json: &[u8], bin: &[u8]) -> Result<Vec<u8>, GlbTooLarge> {
    let json_len = json.len().next_multiple_of(4);
    let bin_len = bin.len().next_multiple_of(4);
    let total = CONTAINER_OVERHEAD + json_len as u64 + bin_len as u64;
    let too_large = GlbTooLarge { bytes: total };
    let total32 = u32::try_from(total).map_err(|_| too_large)?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(GLB_MAGIC);
    out.extend_from_slice(&GLB_VERSION.to_le_bytes());
    out.extend_from_slice(&total32.to_le_bytes());
    out.extend_from_slice(&(json_len as u32).to_le_bytes());
    out.extend_from_slice(CHUNK_JSON);
    out.extend_from_slice(json);
    out.resize(out.len() + json_len - json.len(), b' ');
    out.extend_from_slice(&(bin_len as u32).to_le_bytes());
    out.extend_from_slice(CHUNK_BIN);
    out.extend_from_slice(bin);
    out.resize(out.len() + bin_len - bin.len(), 0);
    Ok(out)
}

/// The chunks of a GLB container, borrowed from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlbChunks<'a> {
    /// The first chunk (the JSON document), with its padding.
    pub json: &'a [u8],
    /// The second chunk (the binary buffer), empty when there is none.
    pub bin: &'a [u8],
}

/// Splits a GLB container into its chunks; `None` when the bytes do not start with the `glTF`
/// magic or a chunk runs past the end. Chunk types are not checked (the importer does that).
pub fn read_glb_container(glb: &[u8]) -> Option<GlbChunks<'_>> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(glb.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
    };
    if glb.get(0..4)? != GLB_MAGIC {
        return None;
    }
    let json_len = u32_at(12)?;
    let json = glb.get(20..20usize.checked_add(json_len)?)?;
    let bin_start = 20 + json_len;
    let bin = match u32_at(bin_start) {
        Some(bin_len) => glb.get(bin_start + 8..(bin_start + 8).checked_add(bin_len)?)?,
        None => &[],
    };
    Some(GlbChunks { json, bin })
}

/// A node above every instance, written as the scene's only root.
#[derive(Clone, Debug, PartialEq)]
pub struct RootNode {
    pub name: String,
    /// Unit quaternion (x, y, z, w).
    pub rotation: [f32; 4],
}

impl RootNode {
    /// A rotation of -90° about X: a Z-up model frame (STEP's, usually) to glTF's Y-up.
    pub fn z_up_to_y_up() -> Self {
        Self {
            name: "Z-up to Y-up".into(),
            rotation: [
                -std::f32::consts::FRAC_1_SQRT_2,
                0.0,
                0.0,
                std::f32::consts::FRAC_1_SQRT_2,
            ],
        }
    }
}

/// How wide index accessors are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexWidth {
    /// 32-bit indices everywhere.
    #[default]
    U32,
    /// 16-bit indices for meshes of up to 65535 vertices (65535 itself stays unused, as glTF
    /// requires), 32-bit for larger ones.
    Smallest,
}

/// How [`export_glb_with`] writes a scene.
#[derive(Clone, Debug, PartialEq)]
pub struct GlbOptions {
    /// `asset.generator`.
    pub generator: String,
    /// A node above every instance; without one, the instances are the scene's roots.
    pub root: Option<RootNode>,
    pub index_width: IndexWidth,
}

impl Default for GlbOptions {
    fn default() -> Self {
        Self {
            generator: "lightbox render-runtime".into(),
            root: None,
            index_width: IndexWidth::U32,
        }
    }
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

/// The binary chunk with its buffer views and accessors. Data already written with the same
/// accessor description is not written again: the earlier accessor is returned.
#[derive(Default)]
struct Buffers {
    bin: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
    /// Hash of (target, description, bytes) -> accessors written with it.
    written: HashMap<u64, Vec<usize>>,
    /// Per accessor: where its bytes are, its target and its description.
    records: Vec<(usize, usize, u32, Value)>,
}

impl Buffers {
    /// A buffer view of `bytes` with no target (an image).
    fn view(&mut self, bytes: Vec<u8>) -> usize {
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let offset = self.bin.len();
        self.bin.extend_from_slice(&bytes);
        self.views
            .push(json!({"buffer": 0, "byteOffset": offset, "byteLength": bytes.len()}));
        self.views.len() - 1
    }

    fn accessor(&mut self, bytes: Vec<u8>, target: u32, description: Value) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        target.hash(&mut hasher);
        description.to_string().hash(&mut hasher);
        bytes.hash(&mut hasher);
        let hash = hasher.finish();
        if let Some(candidates) = self.written.get(&hash) {
            for &index in candidates {
                let (offset, len, written_target, written_description) = &self.records[index];
                if *written_target == target
                    && *written_description == description
                    && self.bin[*offset..*offset + *len] == bytes[..]
                {
                    return index;
                }
            }
        }
        while !self.bin.len().is_multiple_of(4) {
            self.bin.push(0);
        }
        let offset = self.bin.len();
        self.bin.extend_from_slice(&bytes);
        self.views.push(
            json!({"buffer": 0, "byteOffset": offset, "byteLength": bytes.len(), "target": target}),
        );
        let mut accessor = description.clone();
        accessor["bufferView"] = json!(self.views.len() - 1);
        self.accessors.push(accessor);
        let index = self.accessors.len() - 1;
        self.records
            .push((offset, bytes.len(), target, description));
        self.written.entry(hash).or_default().push(index);
        index
    }
}

const ARRAY_BUFFER: u32 = 34962;
const ELEMENT_ARRAY_BUFFER: u32 = 34963;
const FLOAT: u32 = 5126;
const UNSIGNED_SHORT: u32 = 5123;
const UNSIGNED_INT: u32 = 5125;

/// Serialises the scene as a binary glTF 2.0 (GLB) file with the default [`GlbOptions`].
///
/// # Panics
/// Panics on a scene whose GLB would pass 4 GiB (the container's limit); model writers that
/// can meet one use [`export_glb_with`].
pub fn export_glb(scene: &Scene) -> Vec<u8> {
    export_glb_with(scene, &GlbOptions::default()).expect("the scene fits in a GLB")
}

/// Serialises the scene as a binary glTF 2.0 (GLB) file.
pub fn export_glb_with(scene: &Scene, options: &GlbOptions) -> Result<Vec<u8>, GlbTooLarge> {
    let mut buffers = Buffers::default();
    let mut meshes: Vec<Value> = Vec::new();

    for mesh in &scene.meshes {
        // Split into one primitive per material, each with its own index accessor; vertex
        // attributes are shared by all primitives of the mesh.
        let b = &mesh.bounds;
        let pos = buffers.accessor(
            f32_bytes(mesh.positions.iter().flatten().copied()),
            ARRAY_BUFFER,
            json!({"componentType": FLOAT, "count": mesh.positions.len(), "type": "VEC3",
                   "min": [b.min.x, b.min.y, b.min.z], "max": [b.max.x, b.max.y, b.max.z]}),
        );
        let mut attributes = json!({"POSITION": pos});
        if let Some(normals) = &mesh.normals {
            let n = buffers.accessor(
                f32_bytes(normals.iter().flatten().copied()),
                ARRAY_BUFFER,
                json!({"componentType": FLOAT, "count": normals.len(), "type": "VEC3"}),
            );
            attributes["NORMAL"] = json!(n);
        }
        for (uvs, attribute) in [(&mesh.uvs, "TEXCOORD_0"), (&mesh.uvs1, "TEXCOORD_1")] {
            let Some(uvs) = uvs else { continue };
            let t = buffers.accessor(
                f32_bytes(uvs.iter().flatten().copied()),
                ARRAY_BUFFER,
                json!({"componentType": FLOAT, "count": uvs.len(), "type": "VEC2"}),
            );
            attributes[attribute] = json!(t);
        }
        let short_indices = options.index_width == IndexWidth::Smallest
            && mesh.positions.len() <= u16::MAX as usize;
        let mut material_ids: Vec<u32> = mesh.triangle_materials.clone();
        material_ids.sort_unstable();
        material_ids.dedup();
        let mut primitives = Vec::new();
        for material in material_ids {
            let triangles = mesh
                .triangles
                .iter()
                .zip(&mesh.triangle_materials)
                .filter(|(_, &m)| m == material)
                .flat_map(|(t, _)| t.iter().copied());
            let (indices, component, width): (Vec<u8>, u32, usize) = if short_indices {
                let bytes = triangles.flat_map(|i| (i as u16).to_le_bytes()).collect();
                (bytes, UNSIGNED_SHORT, 2)
            } else {
                let bytes = triangles.flat_map(u32::to_le_bytes).collect();
                (bytes, UNSIGNED_INT, 4)
            };
            let count = indices.len() / width;
            let idx = buffers.accessor(
                indices,
                ELEMENT_ARRAY_BUFFER,
                json!({"componentType": component, "count": count, "type": "SCALAR"}),
            );
            let mut primitive =
                json!({"attributes": attributes.clone(), "indices": idx, "mode": 4});
            if (material as usize) < scene.materials.len() {
                primitive["material"] = json!(material);
            }
            primitives.push(primitive);
        }
        let mut m = json!({"primitives": primitives});
        if let Some(name) = &mesh.name {
            m["name"] = json!(name);
        }
        meshes.push(m);
    }

    let mut textures = GlbTextures::default();
    let materials: Vec<Value> = scene
        .materials
        .iter()
        .map(|mat| {
            let mut m = json!({
                "pbrMetallicRoughness": {
                    "baseColorFactor": mat.base_color,
                    "metallicFactor": mat.metallic,
                    "roughnessFactor": mat.roughness,
                },
                "emissiveFactor": mat.emissive.map(|v| v.min(1.0)),
            });
            match mat.alpha_mode {
                AlphaMode::Opaque => {}
                AlphaMode::Mask { cutoff } => {
                    m["alphaMode"] = json!("MASK");
                    m["alphaCutoff"] = json!(cutoff);
                }
                AlphaMode::Blend => m["alphaMode"] = json!("BLEND"),
            }
            if let Some(name) = &mat.name {
                m["name"] = json!(name);
            }
            textures.material(&mut m, mat, &scene.textures);
            m
        })
        .collect();
    let image_views: Vec<usize> = std::mem::take(&mut textures.images)
        .into_iter()
        .map(|png| buffers.view(png))
        .collect();

    let mut nodes: Vec<Value> = scene
        .instances
        .iter()
        .map(|inst| {
            let cols = inst.transform.to_cols_4x4();
            let matrix: Vec<f32> = cols.iter().flatten().copied().collect();
            let mut n = json!({"mesh": inst.mesh});
            if inst.transform != crate::math::Affine::IDENTITY {
                n["matrix"] = json!(matrix);
            }
            if let Some(name) = &inst.name {
                n["name"] = json!(name);
            }
            n
        })
        .collect();
    let instance_nodes: Vec<usize> = (0..nodes.len()).collect();
    let scene_roots = match &options.root {
        Some(root) => {
            nodes.push(json!({
                "name": root.name,
                "rotation": root.rotation,
                "children": instance_nodes,
            }));
            vec![nodes.len() - 1]
        }
        None => instance_nodes,
    };

    let Buffers {
        mut bin,
        views,
        accessors,
        ..
    } = buffers;
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let mut doc = json!({
        "asset": {"version": "2.0", "generator": options.generator},
        "scene": 0,
        "scenes": [{"nodes": scene_roots}],
        "nodes": nodes,
        "meshes": meshes,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": bin.len()}],
    });
    if !materials.is_empty() {
        doc["materials"] = json!(materials);
    }
    textures.write(&mut doc, &image_views);
    let json_bytes =
        serde_json::to_vec(&doc).expect("json serialisation of plain values cannot fail");
    write_glb_container(&json_bytes, &bin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{Affine, Vec3};
    use crate::{Material, Mesh};

    fn triangle(name: &str, material: u32) -> Mesh {
        Mesh {
            name: Some(name.into()),
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            normals: Some(vec![[0.0, 0.0, 1.0]; 3]),
            triangles: vec![[0, 1, 2]],
            triangle_materials: vec![material],
            ..Mesh::default()
        }
    }

    fn document(glb: &[u8]) -> Value {
        serde_json::from_slice(read_glb_container(glb).unwrap().json).unwrap()
    }

    #[test]
    fn the_container_is_padded_and_reads_back() {
        let glb = write_glb_container(b"{\"a\":1}", &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(&glb[0..4], b"glTF");
        assert_eq!(u32::from_le_bytes(glb[4..8].try_into().unwrap()), 2);
        assert_eq!(
            u32::from_le_bytes(glb[8..12].try_into().unwrap()) as usize,
            glb.len()
        );
        assert_eq!(glb.len(), 12 + 8 + 8 + 8 + 8);
        let chunks = read_glb_container(&glb).unwrap();
        assert_eq!(chunks.json, b"{\"a\":1} ");
        assert_eq!(chunks.bin, [1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(&glb[16..20], b"JSON");
        assert_eq!(&glb[32..36], b"BIN\0");
        assert!(read_glb_container(b"glTF\x02\x00").is_none());
        assert!(read_glb_container(&glb[..glb.len() - 1]).is_none());
        assert!(read_glb_container(b"GLTF\x02\x00\x00\x00").is_none());
    }

    #[test]
    fn meshes_that_differ_only_in_material_share_their_geometry() {
        let mut scene = Scene::default();
        scene.add_material(Material::lambertian([1.0, 0.0, 0.0]));
        scene.add_material(Material::lambertian([0.0, 0.0, 1.0]));
        let red = scene.add_mesh(triangle("part", 0));
        let blue = scene.add_mesh(triangle("part", 1));
        scene.add_instance(red, Affine::IDENTITY, Some("red".into()));
        scene.add_instance(blue, Affine::translation(Vec3::new(2.0, 0.0, 0.0)), None);
        let doc = document(&export_glb(&scene));
        let meshes = doc["meshes"].as_array().unwrap();
        assert_eq!(meshes.len(), 2);
        assert_eq!(
            meshes[0]["primitives"][0]["attributes"],
            meshes[1]["primitives"][0]["attributes"]
        );
        assert_eq!(
            meshes[0]["primitives"][0]["indices"],
            meshes[1]["primitives"][0]["indices"]
        );
        assert_ne!(
            meshes[0]["primitives"][0]["material"],
            meshes[1]["primitives"][0]["material"]
        );
        // Positions, normals and indices, written once.
        assert_eq!(doc["accessors"].as_array().unwrap().len(), 3);
        assert_eq!(doc["bufferViews"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn options_add_a_root_node_the_generator_and_short_indices() {
        let mut scene = Scene::default();
        scene.add_material(Material::default());
        let mesh = scene.add_mesh(triangle("part", 0));
        scene.add_instance(mesh, Affine::IDENTITY, Some("a".into()));
        scene.add_instance(
            mesh,
            Affine::translation(Vec3::new(0.0, 0.0, 1.0)),
            Some("b".into()),
        );
        let options = GlbOptions {
            generator: "test writer".into(),
            root: Some(RootNode::z_up_to_y_up()),
            index_width: IndexWidth::Smallest,
        };
        let doc = document(&export_glb_with(&scene, &options).unwrap());
        assert_eq!(doc["asset"]["generator"], "test writer");
        assert_eq!(doc["scenes"][0]["nodes"], json!([2]));
        assert_eq!(doc["nodes"][2]["name"], "Z-up to Y-up");
        assert_eq!(doc["nodes"][2]["children"], json!([0, 1]));
        assert_eq!(doc["nodes"][1]["name"], "b");
        let indices = doc["meshes"][0]["primitives"][0]["indices"]
            .as_u64()
            .unwrap() as usize;
        assert_eq!(doc["accessors"][indices]["componentType"], UNSIGNED_SHORT);
        // The default writes the instances as roots, with 32-bit indices.
        let doc = document(&export_glb(&scene));
        assert_eq!(doc["scenes"][0]["nodes"], json!([0, 1]));
        let indices = doc["meshes"][0]["primitives"][0]["indices"]
            .as_u64()
            .unwrap() as usize;
        assert_eq!(doc["accessors"][indices]["componentType"], UNSIGNED_INT);
        // And it reads back as the same scene.
        let back = crate::import_gltf(&export_glb_with(&scene, &options).unwrap()).unwrap();
        assert_eq!(back.instances.len(), 2);
        assert_eq!(back.meshes[0].triangles, vec![[0, 1, 2]]);
    }
}
