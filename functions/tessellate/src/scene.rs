//! The meshed model as a `lightbox_scene::Scene`, written by the scene crate's one GLB writer:
//! one mesh per distinct part (geometry written once, shared by colour variants), one node per
//! placement, part and placement names, one material per distinct colour (a part with styled
//! faces gets one primitive per colour), metres, and a root node that turns STEP's Z-up into
//! glTF's Y-up. Also the counts read back from a cached GLB.

use std::collections::{HashMap, HashSet};

use lightbox_scene::export::{
    export_glb_with, read_glb_container, GlbOptions, IndexWidth, RootNode,
};
use lightbox_scene::math::Affine;
use lightbox_scene::{AlphaMode, Material, Mesh, Scene};
use serde_json::Value;

use crate::model::MeshedModel;
use crate::TessellateError;

/// Grey for parts without a colour.
const DEFAULT_COLOR: [f32; 4] = [0.6, 0.6, 0.62, 1.0];

fn glb_error(reason: String) -> TessellateError {
    TessellateError::Glb { reason }
}

/// A material for a colour: CAD colours are plain paint, slightly glossy.
fn paint(color: [f32; 4]) -> Material {
    Material {
        name: Some(format!(
            "rgb {:.3} {:.3} {:.3}",
            color[0], color[1], color[2]
        )),
        base_color: color,
        metallic: 0.1,
        roughness: 0.5,
        alpha_mode: if color[3] < 1.0 {
            AlphaMode::Blend
        } else {
            AlphaMode::Opaque
        },
        ..Material::default()
    }
}

/// Clamps a colour to [0, 1], non-finite components to 1.
fn clean(color: [f32; 4]) -> [f32; 4] {
    color.map(|c| {
        if c.is_finite() {
            c.clamp(0.0, 1.0)
        } else {
            1.0
        }
    })
}

/// The model as a scene: parts without triangles are left out with their placements.
pub fn to_scene(model: &MeshedModel) -> Result<Scene, TessellateError> {
    let mut scene = Scene::default();
    let mut materials: HashMap<[u32; 4], u32> = HashMap::new();
    // (part, colour) -> scene mesh: a part placed in another colour becomes a mesh of its own
    // with the same geometry, which the writer stores once.
    let mut meshes: HashMap<(usize, [u32; 4]), usize> = HashMap::new();
    for placement in &model.placements {
        let part = model.parts.get(placement.part).ok_or_else(|| {
            glb_error(format!(
                "placement {:?} refers to part {}, but there are {} parts",
                placement.name,
                placement.part,
                model.parts.len()
            ))
        })?;
        if part.indices.is_empty() {
            continue;
        }
        let color = clean(placement.color.or(part.color).unwrap_or(DEFAULT_COLOR));
        let key = color.map(f32::to_bits);
        let mut material_for = |color: [f32; 4]| {
            *materials
                .entry(color.map(f32::to_bits))
                .or_insert_with(|| scene.add_material(paint(color)))
        };
        let mesh = match meshes.get(&(placement.part, key)) {
            Some(&mesh) => mesh,
            None => {
                let vertices = part.positions.len();
                if let Some(&index) = part.indices.iter().find(|&&i| i as usize >= vertices) {
                    return Err(glb_error(format!(
                        "part {:?} has an index {index} outside its {vertices} vertices",
                        part.name
                    )));
                }
                let triangles: Vec<[u32; 3]> = part
                    .indices
                    .chunks_exact(3)
                    .map(|t| [t[0], t[1], t[2]])
                    .collect();
                let triangle_materials = if part.triangle_colors.is_empty() {
                    vec![material_for(color); triangles.len()]
                } else {
                    if part.triangle_colors.len() != triangles.len() {
                        return Err(glb_error(format!(
                            "part {:?} has {} triangle colours for {} triangles",
                            part.name,
                            part.triangle_colors.len(),
                            triangles.len()
                        )));
                    }
                    // Styled faces keep their colour; the rest take the placement's. Materials
                    // are made for the colours triangles use, once each.
                    let mut by_style: Vec<Option<u32>> = vec![None; part.face_colors.len() + 1];
                    let mut out = Vec::with_capacity(triangles.len());
                    for &style in &part.triangle_colors {
                        let slot = by_style.get_mut(style as usize).ok_or_else(|| {
                            glb_error(format!(
                                "part {:?} has a triangle of face colour {style}, but {} face \
                                 colours",
                                part.name,
                                part.face_colors.len()
                            ))
                        })?;
                        let material = *slot.get_or_insert_with(|| match style {
                            0 => material_for(color),
                            k => material_for(clean(part.face_colors[k as usize - 1])),
                        });
                        out.push(material);
                    }
                    out
                };
                let mesh = scene.add_mesh(Mesh {
                    name: (!part.name.is_empty()).then(|| part.name.clone()),
                    positions: part.positions.clone(),
                    normals: (part.normals.len() == vertices).then(|| part.normals.clone()),
                    triangle_materials,
                    triangles,
                    ..Mesh::default()
                });
                meshes.insert((placement.part, key), mesh);
                mesh
            }
        };
        let m = placement.matrix.map(|v| v as f32);
        let transform = Affine::from_cols_4x4([
            [m[0], m[1], m[2], m[3]],
            [m[4], m[5], m[6], m[7]],
            [m[8], m[9], m[10], m[11]],
            [m[12], m[13], m[14], m[15]],
        ]);
        let instance = lightbox_scene::Instance::new(
            mesh,
            transform,
            (!placement.name.is_empty()).then(|| placement.name.clone()),
        )
        .ok_or_else(|| {
            glb_error(format!(
                "placement {:?} has a singular or non-finite transform",
                placement.name
            ))
        })?;
        scene.instances.push(instance);
    }
    Ok(scene)
}

/// Writes the model as GLB bytes, with `generator` as the asset's generator.
pub fn write_glb(model: &MeshedModel, generator: &str) -> Result<Vec<u8>, TessellateError> {
    let options = GlbOptions {
        generator: generator.to_owned(),
        root: Some(RootNode::z_up_to_y_up()),
        index_width: IndexWidth::Smallest,
    };
    export_glb_with(&to_scene(model)?, &options).map_err(|err| glb_error(err.to_string()))
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
    let chunks = read_glb_container(glb)?;
    let root: Value = serde_json::from_slice(chunks.json).ok()?;
    let index = |value: &Value| value.as_u64().map(|i| i as usize);
    let accessors = root["accessors"].as_array()?;
    let meshes = root["meshes"].as_array()?;
    let mut parts = HashSet::new();
    let mut instances = 0;
    let mut triangles = 0;
    for node in root["nodes"].as_array()? {
        let Some(mesh) = index(&node["mesh"]).and_then(|m| meshes.get(m)) else {
            continue;
        };
        instances += 1;
        let primitives = mesh["primitives"].as_array()?;
        for primitive in primitives {
            if let Some(count) = index(&primitive["indices"])
                .and_then(|i| accessors.get(i))
                .and_then(|a| a["count"].as_u64())
            {
                triangles += count / 3;
            }
        }
        // Colour variants of a part share its name and vertices (all primitives of a mesh
        // share them too); parts with the same geometry (which the writer also stores once)
        // differ by name.
        if let Some(positions) = primitives
            .first()
            .and_then(|p| index(&p["attributes"]["POSITION"]))
        {
            parts.insert((positions, mesh["name"].as_str()));
        }
    }
    Some(GlbCounts {
        parts: parts.len(),
        instances,
        triangles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Part, Placement};

    const IDENTITY: [f64; 16] = [
        1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.,
    ];

    fn triangle_part(name: &str, color: Option<[f32; 4]>) -> Part {
        Part {
            name: name.into(),
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            normals: vec![[0.0, 0.0, 1.0]; 3],
            indices: vec![0, 1, 2],
            color,
            faces: 1,
            faces_without_mesh: 0,
            face_colors: Vec::new(),
            triangle_colors: Vec::new(),
        }
    }

    fn placement(part: usize, name: &str, x: f64, color: Option<[f32; 4]>) -> Placement {
        let mut matrix = IDENTITY;
        matrix[12] = x;
        Placement {
            part,
            matrix,
            name: name.into(),
            color,
        }
    }

    fn model(parts: Vec<Part>, placements: Vec<Placement>) -> MeshedModel {
        MeshedModel {
            parts,
            placements,
            metres_per_unit: 1.0,
            linear_deflection_m: 0.001,
            angular_deflection: 0.5,
            bbox_diagonal_m: 1.0,
            read_ms: 0.0,
            mesh_ms: 0.0,
        }
    }

    #[test]
    fn parts_are_instanced_named_and_coloured() {
        let red = Some([1.0, 0.0, 0.0, 1.0]);
        let blue = Some([0.0, 0.0, 1.0, 1.0]);
        let model = model(
            // Two parts with the same geometry, told apart by name.
            vec![triangle_part("bolt", red), triangle_part("", None)],
            vec![
                placement(0, "bolt 1", 0.0, None),
                placement(0, "bolt 2", 1.0, None),
                // The same part in another colour: its own mesh, the same geometry.
                placement(0, "blue bolt", 2.0, blue),
                placement(1, "", 3.0, None),
            ],
        );
        let glb = write_glb(&model, "test").unwrap();
        let root: Value = serde_json::from_slice(read_glb_container(&glb).unwrap().json).unwrap();
        assert_eq!(root["asset"]["generator"], "test");
        let meshes = root["meshes"].as_array().unwrap();
        assert_eq!(meshes.len(), 3, "bolt, blue bolt, unnamed part");
        assert_eq!(meshes[0]["name"], "bolt");
        assert!(meshes[2].get("name").is_none());
        assert_eq!(
            meshes[0]["primitives"][0]["indices"], meshes[1]["primitives"][0]["indices"],
            "colour variants share the part's geometry"
        );
        let materials = root["materials"].as_array().unwrap();
        assert_eq!(materials.len(), 3, "red, blue and the default grey");
        assert_eq!(materials[0]["name"], "rgb 1.000 0.000 0.000");
        let nodes = root["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 5, "four placements and the Y-up root");
        assert_eq!(nodes[1]["name"], "bolt 2");
        assert_eq!(nodes[4]["name"], "Z-up to Y-up");
        assert_eq!(root["scenes"][0]["nodes"], serde_json::json!([4]));
        assert_eq!(
            glb_counts(&glb),
            Some(GlbCounts {
                parts: 2,
                instances: 4,
                triangles: 4
            })
        );
    }

    #[test]
    fn styled_faces_split_a_part_into_one_primitive_per_colour() {
        let brass = [0.46, 0.38, 0.055, 1.0];
        let red = [0.6, 0.01, 0.01, 1.0];
        let mut part = triangle_part("block", None);
        part.positions.push([1.0, 1.0, 0.0]);
        part.normals.push([0.0, 0.0, 1.0]);
        part.indices.extend([1, 3, 2]);
        part.face_colors = vec![brass];
        // The first triangle is a styled face; the second takes the placement's colour.
        part.triangle_colors = vec![1, 0];
        let model = model(
            vec![part],
            vec![
                placement(0, "plain", 0.0, None),
                placement(0, "red", 1.0, Some(red)),
            ],
        );
        let glb = write_glb(&model, "test").unwrap();
        let root: Value = serde_json::from_slice(read_glb_container(&glb).unwrap().json).unwrap();
        let colour = |m: &Value| -> Vec<f64> {
            let i = m["material"].as_u64().unwrap() as usize;
            serde_json::from_value(
                root["materials"][i]["pbrMetallicRoughness"]["baseColorFactor"].clone(),
            )
            .unwrap()
        };
        let close = |got: Vec<f64>, want: [f32; 4]| {
            got.iter()
                .zip(want)
                .all(|(g, w)| (g - w as f64).abs() < 1e-6)
        };
        let meshes = root["meshes"].as_array().unwrap();
        assert_eq!(meshes.len(), 2, "one mesh per placement colour");
        for (mesh, base) in meshes.iter().zip([DEFAULT_COLOR, red]) {
            let primitives = mesh["primitives"].as_array().unwrap();
            assert_eq!(primitives.len(), 2, "{mesh}");
            let colours: Vec<_> = primitives.iter().map(colour).collect();
            assert!(
                colours.iter().any(|c| close(c.clone(), brass)),
                "{colours:?}"
            );
            assert!(
                colours.iter().any(|c| close(c.clone(), base)),
                "{colours:?}"
            );
            assert_eq!(
                primitives[0]["attributes"]["POSITION"], primitives[1]["attributes"]["POSITION"],
                "the primitives share the part's vertices"
            );
        }
        assert_eq!(
            root["materials"].as_array().unwrap().len(),
            3,
            "brass, grey and red, each once"
        );
        assert_eq!(
            glb_counts(&glb),
            Some(GlbCounts {
                parts: 1,
                instances: 2,
                triangles: 4
            })
        );

        let mut broken = model.clone();
        broken.parts[0].triangle_colors = vec![2, 0];
        let err = write_glb(&broken, "test").unwrap_err();
        assert!(
            err.to_string()
                .contains("face colour 2, but 1 face colours"),
            "{err}"
        );
    }

    #[test]
    fn bad_models_fail_naming_the_part_or_placement() {
        let mut broken = triangle_part("broken", None);
        broken.indices = vec![0, 1, 9];
        let err = write_glb(
            &model(vec![broken], vec![placement(0, "p", 0.0, None)]),
            "test",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not write the GLB: part \"broken\" has an index 9 outside its 3 vertices"
        );
        let err = write_glb(
            &model(
                vec![triangle_part("a", None)],
                vec![placement(3, "lost", 0.0, None)],
            ),
            "test",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("placement \"lost\" refers to part 3"),
            "{err}"
        );
        assert!(glb_counts(b"not a glb").is_none());
    }
}
