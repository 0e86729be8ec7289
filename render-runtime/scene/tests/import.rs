//! GLB import: round trips of the procedural models and clean errors on broken files.

use lightbox_scene::export::export_glb;
use lightbox_scene::{import_gltf, import_gltf_with_limits, ImportError, ImportLimits};
use lightbox_testmodels as testmodels;
use lightbox_testmodels::hostile::{self, join_glb};
use serde_json::Value;

/// Splits a GLB into its JSON document and binary chunk.
fn split_glb(glb: &[u8]) -> (Value, Vec<u8>) {
    hostile::split_glb(glb).expect("a well-formed GLB")
}

#[test]
fn bearing_round_trips_through_glb_with_instancing() {
    let scene = testmodels::bearing_scene(0.05);
    let imported = import_gltf(&export_glb(&scene)).unwrap();
    assert_eq!(imported.instances.len(), 140);
    assert_eq!(
        imported.meshes.len(),
        scene.meshes.len(),
        "shared meshes must stay shared"
    );
    assert_eq!(
        imported.instanced_triangle_count(),
        scene.instanced_triangle_count()
    );
    let (a, b) = (scene.bounds(), imported.bounds());
    assert!((a.min - b.min).length() < 1e-6 && (a.max - b.max).length() < 1e-6);
    // Materials survive: the balls are polished metal.
    let ball = imported
        .instances
        .iter()
        .find(|i| i.name.as_deref() == Some("ball 0-0"))
        .unwrap();
    let material = &imported.materials[imported.meshes[ball.mesh].triangle_materials[0] as usize];
    assert_eq!(material.metallic, 1.0);
    assert!(material.roughness < 0.1);
}

#[test]
fn missing_normals_mean_flat_shading_and_hierarchy_composes() {
    // The cube has no normals; put it under a translated parent to check transform order.
    let mut scene = lightbox_scene::Scene::default();
    scene.add_material(lightbox_scene::Material::default());
    let cube = scene.add_mesh(testmodels::cube_mesh(0.5));
    scene.add_instance(
        cube,
        lightbox_scene::math::Affine::IDENTITY,
        Some("cube".into()),
    );
    let (mut json, bin) = split_glb(&export_glb(&scene));
    json["nodes"] = serde_json::json!([
        {"name": "parent", "translation": [10.0, 0.0, 0.0], "scale": [2.0, 2.0, 2.0], "children": [1]},
        {"name": "cube", "mesh": 0, "translation": [1.0, 0.0, 0.0]}
    ]);
    json["scenes"] = serde_json::json!([{"nodes": [0]}]);
    let imported = import_gltf(&join_glb(&json, &bin)).unwrap();
    assert!(imported.meshes[0].normals.is_none());
    let b = imported.bounds();
    // Child at x = 1 scaled by 2 then moved by 10: centre at 12, half-size 1.
    assert!(
        (b.center().x - 12.0).abs() < 1e-5 && (b.diagonal().x - 2.0).abs() < 1e-5,
        "{b:?}"
    );
}

fn cube_glb() -> (Value, Vec<u8>) {
    hostile::cube_parts()
}

#[test]
fn out_of_range_index_is_an_error_naming_the_mesh() {
    let (json, mut bin) = cube_glb();
    // The index accessor is the last buffer view; corrupt its first index.
    let view = &json["bufferViews"][json["accessors"][1]["bufferView"].as_u64().unwrap() as usize];
    let offset = view["byteOffset"].as_u64().unwrap() as usize;
    bin[offset..offset + 4].copy_from_slice(&1000u32.to_le_bytes());
    let err = import_gltf(&join_glb(&json, &bin)).unwrap_err();
    match &err {
        ImportError::IndexOutOfRange {
            index,
            vertex_count,
            mesh,
            ..
        } => {
            assert_eq!((*index, *vertex_count), (1000, 8));
            assert!(mesh.contains("cube"), "{mesh}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn accessor_past_its_buffer_view_is_an_error() {
    let (mut json, bin) = cube_glb();
    json["accessors"][0]["count"] = serde_json::json!(1_000);
    let err = import_gltf(&join_glb(&json, &bin)).unwrap_err();
    assert!(
        matches!(err, ImportError::Accessor { accessor: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("accessor 0"), "{err}");
}

#[test]
fn non_finite_positions_are_rejected() {
    let (json, mut bin) = cube_glb();
    bin[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = import_gltf(&join_glb(&json, &bin)).unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
}

#[test]
fn truncated_and_garbage_input_fail_cleanly() {
    let glb = testmodels::bearing_glb(0.02);
    for cut in [0, 11, 20, 100, glb.len() / 2, glb.len() - 1] {
        assert!(import_gltf(&glb[..cut]).is_err(), "cut at {cut} imported");
    }
    assert!(import_gltf(b"not a gltf file at all").is_err());
}

#[test]
fn triangle_limit_is_enforced() {
    let glb = testmodels::bearing_glb(0.05);
    let limits = ImportLimits {
        max_instanced_triangles: 1_000,
        ..ImportLimits::default()
    };
    let err = import_gltf_with_limits(&glb, &limits).unwrap_err();
    assert!(matches!(err, ImportError::TooLarge { .. }), "{err:?}");
}

#[test]
fn scene_without_triangles_is_empty() {
    let (mut json, bin) = cube_glb();
    json["nodes"] = serde_json::json!([{"name": "empty"}]);
    let err = import_gltf(&join_glb(&json, &bin)).unwrap_err();
    assert!(matches!(err, ImportError::Empty), "{err:?}");
}
