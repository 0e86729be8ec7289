//! GLB export of a [`Scene`]: one glTF mesh per distinct mesh, one node per instance.
//!
//! Used to turn procedural test models into real GLB bytes, so tests and benchmarks exercise the
//! same importer as user files. Textures are not exported (test models use factors only).

use serde_json::{json, Value};

use super::{AlphaMode, Scene};

/// Appends `bytes` to the binary chunk at a 4-byte aligned offset; returns the offset.
fn push_aligned(bin: &mut Vec<u8>, bytes: &[u8]) -> usize {
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let offset = bin.len();
    bin.extend_from_slice(bytes);
    offset
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

/// Serialises the scene as a binary glTF 2.0 (GLB) file.
pub fn export_glb(scene: &Scene) -> Vec<u8> {
    let mut bin: Vec<u8> = Vec::new();
    let mut views: Vec<Value> = Vec::new();
    let mut accessors: Vec<Value> = Vec::new();
    let mut meshes: Vec<Value> = Vec::new();

    let mut add_accessor = |bin: &mut Vec<u8>, bytes: Vec<u8>, target: u32, acc: Value| -> usize {
        let offset = push_aligned(bin, &bytes);
        views.push(
            json!({"buffer": 0, "byteOffset": offset, "byteLength": bytes.len(), "target": target}),
        );
        let mut acc = acc;
        acc["bufferView"] = json!(views.len() - 1);
        accessors.push(acc);
        accessors.len() - 1
    };

    for mesh in &scene.meshes {
        // Split into one primitive per material, each with its own index accessor; vertex
        // attributes are shared by all primitives of the mesh.
        let b = &mesh.bounds;
        let pos = add_accessor(
            &mut bin,
            f32_bytes(mesh.positions.iter().flatten().copied()),
            34962,
            json!({"componentType": 5126, "count": mesh.positions.len(), "type": "VEC3",
                   "min": [b.min.x, b.min.y, b.min.z], "max": [b.max.x, b.max.y, b.max.z]}),
        );
        let mut attributes = json!({"POSITION": pos});
        if let Some(normals) = &mesh.normals {
            let n = add_accessor(
                &mut bin,
                f32_bytes(normals.iter().flatten().copied()),
                34962,
                json!({"componentType": 5126, "count": normals.len(), "type": "VEC3"}),
            );
            attributes["NORMAL"] = json!(n);
        }
        if let Some(uvs) = &mesh.uvs {
            let t = add_accessor(
                &mut bin,
                f32_bytes(uvs.iter().flatten().copied()),
                34962,
                json!({"componentType": 5126, "count": uvs.len(), "type": "VEC2"}),
            );
            attributes["TEXCOORD_0"] = json!(t);
        }
        let mut material_ids: Vec<u32> = mesh.triangle_materials.clone();
        material_ids.sort_unstable();
        material_ids.dedup();
        let mut primitives = Vec::new();
        for material in material_ids {
            let indices: Vec<u8> = mesh
                .triangles
                .iter()
                .zip(&mesh.triangle_materials)
                .filter(|(_, &m)| m == material)
                .flat_map(|(t, _)| t.iter().flat_map(|i| i.to_le_bytes()))
                .collect();
            let count = indices.len() / 4;
            let idx = add_accessor(
                &mut bin,
                indices,
                34963,
                json!({"componentType": 5125, "count": count, "type": "SCALAR"}),
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
            m
        })
        .collect();

    let nodes: Vec<Value> = scene
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
    let root_children: Vec<usize> = (0..nodes.len()).collect();

    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let mut doc = json!({
        "asset": {"version": "2.0", "generator": "lightbox render-runtime"},
        "scene": 0,
        "scenes": [{"nodes": root_children}],
        "nodes": nodes,
        "meshes": meshes,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": bin.len()}],
    });
    if !materials.is_empty() {
        doc["materials"] = json!(materials);
    }
    let mut json_bytes =
        serde_json::to_vec(&doc).expect("json serialisation of plain values cannot fail");
    while !json_bytes.len().is_multiple_of(4) {
        json_bytes.push(b' ');
    }

    let total = 12 + 8 + json_bytes.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json_bytes);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&bin);
    out
}
