//! Writes a [`MeshedModel`] as binary glTF with `gltf-json`: one mesh per distinct part (shared
//! accessors), one node per placement, materials from colours, metres, and a root node that turns
//! STEP's Z-up into glTF's Y-up.

use std::collections::{BTreeMap, HashMap};

use gltf_json as json;
use json::validation::{Checked, USize64};

use crate::model::MeshedModel;

/// Why a GLB could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GlbError {
    #[error("part {part:?} has an index {index} outside its {vertices} vertices")]
    IndexOutOfRange {
        part: String,
        index: u32,
        vertices: usize,
    },
    #[error("placement {placement:?} refers to part {part}, but there are {parts} parts")]
    NoSuchPart {
        placement: String,
        part: usize,
        parts: usize,
    },
    #[error("the model is larger than a GLB can hold ({bytes} bytes)")]
    TooLarge { bytes: u64 },
    #[error("could not serialise the glTF JSON: {0}")]
    Json(#[from] json::Error),
}

/// Rotation of -90° about X: Z-up (STEP) to Y-up (glTF).
const Z_UP_TO_Y_UP: [f32; 4] = [
    -std::f32::consts::FRAC_1_SQRT_2,
    0.0,
    0.0,
    std::f32::consts::FRAC_1_SQRT_2,
];

/// Grey for parts without a colour.
const DEFAULT_COLOR: [f32; 4] = [0.6, 0.6, 0.62, 1.0];

struct Bin {
    data: Vec<u8>,
}

impl Bin {
    fn align(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

fn push_view(
    root: &mut json::Root,
    bin: &mut Bin,
    bytes: &[u8],
    target: json::buffer::Target,
) -> json::Index<json::buffer::View> {
    bin.align();
    let offset = bin.data.len();
    bin.data.extend_from_slice(bytes);
    root.push(json::buffer::View {
        buffer: json::Index::new(0),
        byte_length: USize64(bytes.len() as u64),
        byte_offset: Some(USize64(offset as u64)),
        byte_stride: None,
        name: None,
        target: Some(Checked::Valid(target)),
        extensions: None,
        extras: Default::default(),
    })
}

fn accessor(
    view: json::Index<json::buffer::View>,
    count: usize,
    component: json::accessor::ComponentType,
    kind: json::accessor::Type,
    bounds: Option<([f32; 3], [f32; 3])>,
) -> json::Accessor {
    json::Accessor {
        buffer_view: Some(view),
        byte_offset: None,
        count: USize64(count as u64),
        component_type: Checked::Valid(json::accessor::GenericComponentType(component)),
        extensions: None,
        extras: Default::default(),
        type_: Checked::Valid(kind),
        min: bounds.map(|(min, _)| json::Value::from(min.to_vec())),
        max: bounds.map(|(_, max)| json::Value::from(max.to_vec())),
        name: None,
        normalized: false,
        sparse: None,
    }
}

fn f32_bytes(values: &[[f32; 3]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 12);
    for v in values {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out
}

/// Writes the model as GLB bytes.
pub fn write_glb(model: &MeshedModel, generator: &str) -> Result<Vec<u8>, GlbError> {
    let mut root = json::Root {
        asset: json::Asset {
            generator: Some(generator.to_owned()),
            version: "2.0".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut bin = Bin { data: Vec::new() };

    // Materials, one per distinct colour.
    let mut materials: HashMap<[u32; 4], json::Index<json::Material>> = HashMap::new();
    let mut material_for = |root: &mut json::Root, color: [f32; 4]| {
        let color = color.map(|c| {
            if c.is_finite() {
                c.clamp(0.0, 1.0)
            } else {
                1.0
            }
        });
        *materials.entry(color.map(f32::to_bits)).or_insert_with(|| {
            let blend = color[3] < 1.0;
            root.push(json::Material {
                name: Some(format!(
                    "rgb {:.3} {:.3} {:.3}",
                    color[0], color[1], color[2]
                )),
                alpha_mode: Checked::Valid(if blend {
                    json::material::AlphaMode::Blend
                } else {
                    json::material::AlphaMode::Opaque
                }),
                pbr_metallic_roughness: json::material::PbrMetallicRoughness {
                    base_color_factor: json::material::PbrBaseColorFactor(color),
                    metallic_factor: json::material::StrengthFactor(0.1),
                    roughness_factor: json::material::StrengthFactor(0.5),
                    ..Default::default()
                },
                ..Default::default()
            })
        })
    };

    // Geometry: accessors per distinct part, written once.
    struct PartAccessors {
        attributes: BTreeMap<Checked<json::mesh::Semantic>, json::Index<json::Accessor>>,
        indices: json::Index<json::Accessor>,
    }
    let mut part_accessors = Vec::with_capacity(model.parts.len());
    for part in &model.parts {
        if part.indices.is_empty() {
            part_accessors.push(None);
            continue;
        }
        let vertices = part.positions.len();
        if let Some(&index) = part.indices.iter().find(|&&i| i as usize >= vertices) {
            return Err(GlbError::IndexOutOfRange {
                part: part.name.clone(),
                index,
                vertices,
            });
        }
        let mut min = [f32::INFINITY; 3];
        let mut max = [f32::NEG_INFINITY; 3];
        for p in &part.positions {
            for k in 0..3 {
                min[k] = min[k].min(p[k]);
                max[k] = max[k].max(p[k]);
            }
        }
        let position_view = push_view(
            &mut root,
            &mut bin,
            &f32_bytes(&part.positions),
            json::buffer::Target::ArrayBuffer,
        );
        let positions = root.push(accessor(
            position_view,
            vertices,
            json::accessor::ComponentType::F32,
            json::accessor::Type::Vec3,
            Some((min, max)),
        ));
        let normal_view = push_view(
            &mut root,
            &mut bin,
            &f32_bytes(&part.normals),
            json::buffer::Target::ArrayBuffer,
        );
        let normals = root.push(accessor(
            normal_view,
            vertices,
            json::accessor::ComponentType::F32,
            json::accessor::Type::Vec3,
            None,
        ));
        // 16-bit indices where they fit: most parts have fewer than 65536 vertices.
        let (index_bytes, component) = if vertices <= u16::MAX as usize {
            let mut out = Vec::with_capacity(part.indices.len() * 2);
            for &i in &part.indices {
                out.extend_from_slice(&(i as u16).to_le_bytes());
            }
            (out, json::accessor::ComponentType::U16)
        } else {
            let mut out = Vec::with_capacity(part.indices.len() * 4);
            for &i in &part.indices {
                out.extend_from_slice(&i.to_le_bytes());
            }
            (out, json::accessor::ComponentType::U32)
        };
        let index_view = push_view(
            &mut root,
            &mut bin,
            &index_bytes,
            json::buffer::Target::ElementArrayBuffer,
        );
        let indices = root.push(accessor(
            index_view,
            part.indices.len(),
            component,
            json::accessor::Type::Scalar,
            None,
        ));
        let mut attributes = BTreeMap::new();
        attributes.insert(Checked::Valid(json::mesh::Semantic::Positions), positions);
        attributes.insert(Checked::Valid(json::mesh::Semantic::Normals), normals);
        part_accessors.push(Some(PartAccessors {
            attributes,
            indices,
        }));
    }

    // Meshes: one per distinct part, plus a variant only where an instance overrides the colour.
    let mut meshes: HashMap<(usize, [u32; 4]), json::Index<json::Mesh>> = HashMap::new();
    let mut children = Vec::with_capacity(model.placements.len());
    for placement in &model.placements {
        let part = model
            .parts
            .get(placement.part)
            .ok_or(GlbError::NoSuchPart {
                placement: placement.name.clone(),
                part: placement.part,
                parts: model.parts.len(),
            })?;
        let Some(accessors) = &part_accessors[placement.part] else {
            continue;
        };
        let color = placement.color.or(part.color).unwrap_or(DEFAULT_COLOR);
        let mesh = match meshes.get(&(placement.part, color.map(f32::to_bits))) {
            Some(&mesh) => mesh,
            None => {
                let material = material_for(&mut root, color);
                let mesh = root.push(json::Mesh {
                    extensions: None,
                    extras: Default::default(),
                    name: (!part.name.is_empty()).then(|| part.name.clone()),
                    primitives: vec![json::mesh::Primitive {
                        attributes: accessors.attributes.clone(),
                        extensions: None,
                        extras: Default::default(),
                        indices: Some(accessors.indices),
                        material: Some(material),
                        mode: Checked::Valid(json::mesh::Mode::Triangles),
                        targets: None,
                    }],
                    weights: None,
                });
                meshes.insert((placement.part, color.map(f32::to_bits)), mesh);
                mesh
            }
        };
        let matrix = placement.matrix.map(|v| v as f32);
        let identity = matrix
            == [
                1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
            ];
        children.push(root.push(json::Node {
            mesh: Some(mesh),
            matrix: (!identity).then_some(matrix),
            name: (!placement.name.is_empty()).then(|| placement.name.clone()),
            ..Default::default()
        }));
    }
    let model_node = root.push(json::Node {
        name: Some("Z-up to Y-up".into()),
        rotation: Some(json::scene::UnitQuaternion(Z_UP_TO_Y_UP)),
        children: Some(children),
        ..Default::default()
    });
    let scene = root.push(json::Scene {
        extensions: None,
        extras: Default::default(),
        name: Some("model".into()),
        nodes: vec![model_node],
    });
    root.scene = Some(scene);

    bin.align();
    if !bin.data.is_empty() {
        root.push(json::Buffer {
            byte_length: USize64(bin.data.len() as u64),
            name: None,
            uri: None,
            extensions: None,
            extras: Default::default(),
        });
    }
    let mut text = root.to_vec()?;
    while !text.len().is_multiple_of(4) {
        text.push(b' ');
    }
    let total = 12
        + 8
        + text.len() as u64
        + if bin.data.is_empty() {
            0
        } else {
            8 + bin.data.len() as u64
        };
    let total32 = u32::try_from(total).map_err(|_| GlbError::TooLarge { bytes: total })?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&total32.to_le_bytes());
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&text);
    if !bin.data.is_empty() {
        out.extend_from_slice(&(bin.data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(&bin.data);
    }
    Ok(out)
}

/// Counts read back from a GLB this crate wrote (for cache hits, which skip meshing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlbCounts {
    pub parts: usize,
    pub instances: usize,
    pub triangles: u64,
}

/// Reads part, instance and triangle counts from a GLB's JSON chunk.
pub fn glb_counts(glb: &[u8]) -> Option<GlbCounts> {
    if glb.len() < 20 || &glb[0..4] != b"glTF" || &glb[16..20] != b"JSON" {
        return None;
    }
    let length = u32::from_le_bytes(glb[12..16].try_into().ok()?) as usize;
    let text = glb.get(20..20 + length)?;
    let root: json::Root = json::deserialize::from_slice(text).ok()?;
    let triangles_of_mesh = |mesh: &json::Mesh| -> u64 {
        mesh.primitives
            .iter()
            .filter_map(|p| p.indices)
            .filter_map(|i| root.accessors.get(i.value()))
            .map(|a| a.count.0 / 3)
            .sum()
    };
    let mut parts = std::collections::HashSet::new();
    let mut instances = 0;
    let mut triangles = 0;
    for node in &root.nodes {
        if let Some(mesh) = node.mesh.and_then(|m| root.meshes.get(m.value())) {
            instances += 1;
            triangles += triangles_of_mesh(mesh);
            // Colour variants share the part's accessors: count distinct index accessors.
            if let Some(indices) = mesh.primitives.first().and_then(|p| p.indices) {
                parts.insert(indices.value());
            }
        }
    }
    Some(GlbCounts {
        parts: parts.len(),
        instances,
        triangles,
    })
}
