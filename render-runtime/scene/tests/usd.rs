//! USD import and our USD writer, checked against Pixar's `usd-core`.
//!
//! Every file the writer produces is opened by Pixar's USD (`tests/usd_check.py`, run with the
//! project's tools Python: `LIGHTBOX_TOOLS_PYTHON`, or `../.tools/venv/bin/python` with
//! `usd-core` from `tools/requirements.txt`) and must pass its validators.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lightbox_scene::export::export_glb;
use lightbox_scene::math::{Affine, Vec3};
use lightbox_scene::usd::{import_usd, import_usd_with_limits, UsdImportError};
use lightbox_scene::usd_files::read_usd_model;
use lightbox_scene::usd_write::{
    export_usda, export_usda_with, export_usda_with_textures, export_usdz, export_usdz_with,
    UsdInstancing, UsdWriteOptions,
};
use lightbox_scene::{import_gltf, ImportLimits};
use lightbox_scene::{Material, Scene};
use lightbox_testmodels as testmodels;
use serde_json::Value;

fn tools_python() -> PathBuf {
    match std::env::var_os("LIGHTBOX_TOOLS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python"),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lightbox-usd-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` to `file_name`, runs Pixar's checks on it and returns the report, failing on
/// any validator error.
fn pixar_check(file_name: &str, bytes: &[u8]) -> Result<Value> {
    pixar_check_with(file_name, bytes, &[])
}

/// [`pixar_check`] with `files` (relative path, bytes) written next to the checked file.
fn pixar_check_with(file_name: &str, bytes: &[u8], files: &[(String, Vec<u8>)]) -> Result<Value> {
    let dir = temp_dir(file_name.replace('.', "-").as_str());
    let path = dir.join(file_name);
    std::fs::write(&path, bytes)?;
    for (name, data) in files {
        let file = dir.join(name);
        std::fs::create_dir_all(file.parent().unwrap())?;
        std::fs::write(file, data)?;
    }
    let python = tools_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usd_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .output()
        .with_context(|| {
            format!(
                "running {} (install the tools with tools/setup.sh, or set LIGHTBOX_TOOLS_PYTHON)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "usd-core check of {} failed: {}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    if !errors.is_empty() {
        bail!(
            "usd-core reports errors for {}: {errors:#?}",
            path.display()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(report)
}

/// Material values a triangle is drawn with.
fn material_key(m: &Material) -> [i64; 9] {
    let q = |v: f32| (v * 1e5).round() as i64;
    [
        q(m.base_color[0]),
        q(m.base_color[1]),
        q(m.base_color[2]),
        q(m.base_color[3]),
        q(m.metallic),
        q(m.roughness),
        q(m.emissive[0]),
        q(m.emissive[1]),
        q(m.emissive[2]),
    ]
}

/// Triangles drawn per material value, over all instances.
fn triangles_by_material(scene: &Scene) -> std::collections::BTreeMap<[i64; 9], usize> {
    let mut out = std::collections::BTreeMap::new();
    for inst in &scene.instances {
        for &m in &scene.meshes[inst.mesh].triangle_materials {
            *out.entry(material_key(&scene.materials[m as usize]))
                .or_insert(0) += 1;
        }
    }
    out
}

fn assert_bounds_close(a: &Scene, b: &Scene) {
    let (ba, bb) = (a.bounds(), b.bounds());
    let scale = ba.diagonal().length().max(1e-6);
    let d = (ba.min - bb.min).length() + (ba.max - bb.max).length();
    assert!(
        d <= 1e-4 * scale,
        "bounds differ: {ba:?} vs {bb:?} (distance {d})"
    );
}

fn assert_report_matches_scene(report: &Value, scene: &Scene) {
    assert_eq!(report["up_axis"], "Y");
    assert_eq!(report["meters_per_unit"].as_f64(), Some(1.0));
    assert_eq!(report["default_prim"], "/Root");
    assert_eq!(
        report["triangles"].as_u64(),
        Some(scene.instanced_triangle_count() as u64),
        "triangles Pixar draws"
    );
    assert_eq!(
        report["placements"].as_u64(),
        Some(scene.instances.len() as u64),
        "mesh placements Pixar draws"
    );
    // Pixar's world bounds agree with ours.
    let b = scene.bounds();
    let min: Vec<f64> = serde_json::from_value(report["bounds_min"].clone()).unwrap();
    let max: Vec<f64> = serde_json::from_value(report["bounds_max"].clone()).unwrap();
    let scale = b.diagonal().length() as f64;
    for i in 0..3 {
        assert!(
            (min[i] - b.min[i] as f64).abs() <= 1e-4 * scale,
            "min {min:?} vs {b:?}"
        );
        assert!(
            (max[i] - b.max[i] as f64).abs() <= 1e-4 * scale,
            "max {max:?} vs {b:?}"
        );
    }
}

#[test]
fn written_usda_of_the_bearing_passes_pixar_checks_and_draws_the_same_scene() -> Result<()> {
    let scene = import_gltf(&testmodels::bearing_glb(0.1))?;
    let usda = export_usda(&scene);
    let report = pixar_check("bearing.usda", usda.as_bytes())?;
    assert_report_matches_scene(&report, &scene);
    assert!(report["prototypes"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        (report["prototypes"].as_u64().unwrap() as usize) <= scene.meshes.len(),
        "one Pixar prototype per distinct mesh at most: {report}"
    );
    Ok(())
}

#[test]
fn written_usdz_passes_pixar_package_checks() -> Result<()> {
    let scene = testmodels::primitives_scene();
    let usdz = export_usdz(&scene);
    let report = pixar_check("primitives.usdz", &usdz)?;
    assert_report_matches_scene(&report, &scene);
    Ok(())
}

#[test]
fn point_instancer_output_passes_pixar_checks_and_draws_the_same_scene() -> Result<()> {
    let mut scene = import_gltf(&testmodels::bearing_glb(0.1))?;
    // One sheared placement cannot be a PointInstancer point; it must fall back to a reference.
    let mut shear = scene.instances[0].transform;
    shear.rows[0][1] += 0.3;
    let mesh = scene.instances[0].mesh;
    scene.add_instance(mesh, shear, Some("sheared".into()));
    let options = UsdWriteOptions {
        instancing: UsdInstancing::PointInstancer,
    };
    let usda = export_usda_with(&scene, &options);
    assert!(usda.contains("def PointInstancer"));
    let report = pixar_check("bearing-points.usda", usda.as_bytes())?;
    assert_report_matches_scene(&report, &scene);

    let back = import_usd(usda.as_bytes())?;
    assert_eq!(back.instances.len(), scene.instances.len());
    assert_eq!(back.meshes.len(), scene.meshes.len(), "points share meshes");
    assert_eq!(
        back.instanced_triangle_count(),
        scene.instanced_triangle_count()
    );
    assert_bounds_close(&scene, &back);

    let usdz = export_usdz_with(&scene, &options);
    pixar_check("bearing-points.usdz", &usdz)?;
    Ok(())
}

#[test]
fn glb_to_usd_to_glb_keeps_triangles_instances_and_materials() -> Result<()> {
    let glb = testmodels::bearing_glb(0.1);
    let original = import_gltf(&glb)?;
    for (name, usd) in [
        ("usda", export_usda(&original).into_bytes()),
        ("usdz", export_usdz(&original)),
    ] {
        let scene = import_usd(&usd).with_context(|| name.to_string())?;
        let glb_again = export_glb(&scene);
        let round = import_gltf(&glb_again)?;
        assert_eq!(
            round.instanced_triangle_count(),
            original.instanced_triangle_count(),
            "{name}"
        );
        assert_eq!(
            round.unique_triangle_count(),
            original.unique_triangle_count(),
            "{name}: meshes stay shared"
        );
        assert_eq!(round.instances.len(), original.instances.len(), "{name}");
        assert_eq!(round.meshes.len(), original.meshes.len(), "{name}");
        assert_eq!(
            triangles_by_material(&round),
            triangles_by_material(&original),
            "{name}: material values per triangle"
        );
        assert_bounds_close(&original, &round);
    }
    Ok(())
}

const HAND_WRITTEN: &str = r#"#usda 1.0
(
    defaultPrim = "World"
    metersPerUnit = 0.01
    upAxis = "Z"
)

def Xform "World"
{
    def Scope "Looks"
    {
        def Material "Red"
        {
            token outputs:surface.connect = </World/Looks/Red/Surface.outputs:surface>
            def Shader "Surface"
            {
                uniform token info:id = "UsdPreviewSurface"
                color3f inputs:diffuseColor = (0.8, 0.1, 0.05)
                color3f inputs:emissiveColor = (0.5, 0.25, 0)
                float inputs:metallic = 0.25
                float inputs:roughness = 0.4
                float inputs:opacity = 0.5
                token outputs:surface
            }
        }
        def Material "Blue"
        {
            token outputs:surface.connect = </World/Looks/Blue/Surface.outputs:surface>
            def Shader "Surface"
            {
                uniform token info:id = "UsdPreviewSurface"
                color3f inputs:diffuseColor = (0.1, 0.2, 0.9)
                token outputs:surface
            }
        }
    }

    def Xform "Moved"
    {
        double3 xformOp:translate = (100, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]

        def Xform "BoltA" (
            instanceable = true
            prepend references = </Assets/Bolt>
        )
        {
            double3 xformOp:translate = (0, 0, 10)
            uniform token[] xformOpOrder = ["xformOp:translate"]
        }
        def Xform "BoltB" (
            instanceable = true
            prepend references = </Assets/Bolt>
        )
        {
            double3 xformOp:translate = (0, 0, 20)
            uniform token[] xformOpOrder = ["xformOp:translate"]
        }
    }

    def PointInstancer "Scatter"
    {
        rel prototypes = [</World/Scatter/Prototypes/Quad>]
        int[] protoIndices = [0, 0, 0]
        point3f[] positions = [(0, 0, 0), (0, 100, 0), (0, 200, 0)]
        quath[] orientations = [(1, 0, 0, 0), (1, 0, 0, 0), (0.7071068, 0, 0, 0.7071068)]
        float3[] scales = [(1, 1, 1), (2, 2, 2), (1, 1, 1)]

        def Scope "Prototypes"
        {
            def Mesh "Quad" (
                prepend apiSchemas = ["MaterialBindingAPI"]
            )
            {
                int[] faceVertexCounts = [4]
                int[] faceVertexIndices = [0, 1, 2, 3]
                point3f[] points = [(0, 0, 0), (10, 0, 0), (10, 10, 0), (0, 10, 0)]
                normal3f[] normals = [(0, 0, 1)] (
                    interpolation = "constant"
                )
                uniform token subdivisionScheme = "none"
                rel material:binding = </World/Looks/Red>
            }
        }
    }

    def Mesh "Hidden" (
        active = false
    )
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    }
}

class "Assets"
{
    def Xform "Bolt"
    {
        def Mesh "Shank" (
            prepend apiSchemas = ["MaterialBindingAPI"]
        )
        {
            int[] faceVertexCounts = [3, 4]
            int[] faceVertexIndices = [0, 1, 2, 0, 2, 3, 4]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1)]
            rel material:binding = </World/Looks/Blue>
            uniform token subsetFamily:materialBind:familyType = "nonOverlapping"

            def GeomSubset "RedFace" (
                prepend apiSchemas = ["MaterialBindingAPI"]
            )
            {
                uniform token elementType = "face"
                uniform token familyName = "materialBind"
                int[] indices = [1]
                rel material:binding = </World/Looks/Red>
            }
        }
    }
}
"#;

#[test]
fn hand_written_usda_with_instancing_z_up_and_centimetres() -> Result<()> {
    // The file itself is valid USD by Pixar's reckoning.
    let report = pixar_check("hand.usda", HAND_WRITTEN.as_bytes());
    // Pixar warns about the stage metadata we deliberately set; errors would fail here.
    report?;

    let scene = import_usd(HAND_WRITTEN.as_bytes())?;
    // Two bolt instances share one mesh; three points share the quad; the inactive mesh and
    // the class prototype are not drawn.
    assert_eq!(scene.instances.len(), 5);
    assert_eq!(scene.meshes.len(), 2, "instances share meshes");
    let quad = scene
        .meshes
        .iter()
        .position(|m| m.triangles.len() == 2)
        .unwrap();
    let bolt = scene
        .meshes
        .iter()
        .position(|m| m.triangles.len() == 3)
        .expect("a triangle plus a fan-triangulated quad");
    assert_eq!(scene.instances.iter().filter(|i| i.mesh == quad).count(), 3);
    assert_eq!(scene.instances.iter().filter(|i| i.mesh == bolt).count(), 2);

    // Z-up centimetres: the bolt at (100, 0, 10) cm sits at (1, 0.1, 0) m in Y-up... with
    // Z-up (x, y, z) becoming (x, z, -y).
    let bolt_origins: Vec<Vec3> = scene
        .instances
        .iter()
        .filter(|i| i.mesh == bolt)
        .map(|i| i.transform.transform_point(Vec3::ZERO))
        .collect();
    let close = |a: Vec3, b: Vec3| (a - b).length() < 1e-5;
    assert!(
        bolt_origins
            .iter()
            .any(|&p| close(p, Vec3::new(1.0, 0.1, 0.0))),
        "{bolt_origins:?}"
    );
    assert!(
        bolt_origins
            .iter()
            .any(|&p| close(p, Vec3::new(1.0, 0.2, 0.0))),
        "{bolt_origins:?}"
    );
    // Point 1 is scaled by 2 at (0, 100, 0) cm: its far corner (10, 10, 0) lands at
    // (20, 120, 0) cm = (0.2, 0, -1.2) m Y-up.
    let quad_corners: Vec<Vec3> = scene
        .instances
        .iter()
        .filter(|i| i.mesh == quad)
        .map(|i| i.transform.transform_point(Vec3::new(10.0, 10.0, 0.0)))
        .collect();
    assert!(
        quad_corners
            .iter()
            .any(|&p| close(p, Vec3::new(0.2, 0.0, -1.2))),
        "{quad_corners:?}"
    );
    // Point 2 is turned 90 degrees about Z: (10, 10, 0) -> (-10, 10, 0), plus (0, 200, 0).
    assert!(
        quad_corners
            .iter()
            .any(|&p| close(p, Vec3::new(-0.1, 0.0, -2.1))),
        "{quad_corners:?}"
    );

    // Materials: the quad is red (with its emission and opacity), the bolt blue with one
    // red face from its GeomSubset.
    let red = &scene.materials[scene.meshes[quad].triangle_materials[0] as usize];
    assert_eq!(red.name.as_deref(), Some("Red"));
    assert_eq!(red.base_color, [0.8, 0.1, 0.05, 0.5]);
    assert_eq!((red.metallic, red.roughness), (0.25, 0.4));
    assert_eq!(red.emissive, [0.5, 0.25, 0.0]);
    assert_eq!(red.alpha_mode, lightbox_scene::AlphaMode::Blend);
    let bolt_materials: Vec<Option<&str>> = scene.meshes[bolt]
        .triangle_materials
        .iter()
        .map(|&m| scene.materials[m as usize].name.as_deref())
        .collect();
    assert_eq!(bolt_materials, [Some("Blue"), Some("Red"), Some("Red")]);
    let blue = scene
        .materials
        .iter()
        .find(|m| m.name.as_deref() == Some("Blue"))
        .unwrap();
    // UsdPreviewSurface defaults for what the file leaves out.
    assert_eq!((blue.metallic, blue.roughness), (0.0, 0.5));

    // The constant normal applies to every vertex of the quad.
    let normals = scene.meshes[quad].normals.as_ref().unwrap();
    assert!(normals.iter().all(|n| *n == [0.0, 0.0, 1.0]));
    Ok(())
}

#[test]
fn usdc_written_by_pixar_imports_like_our_usda() -> Result<()> {
    let scene = import_gltf(&testmodels::bearing_glb(0.05))?;
    let usda = export_usda(&scene);
    let usdc = pixar_convert(&usda, "usdc")?;
    assert!(usdc.starts_with(b"PXR-USDC"));
    let from_usdc = import_usd(&usdc)?;
    let from_usda = import_usd(usda.as_bytes())?;
    assert_eq!(from_usdc.instances.len(), scene.instances.len());
    assert_eq!(from_usdc.meshes.len(), scene.meshes.len());
    assert_eq!(
        from_usdc.instanced_triangle_count(),
        from_usda.instanced_triangle_count()
    );
    assert_eq!(
        triangles_by_material(&from_usdc),
        triangles_by_material(&from_usda)
    );
    assert_bounds_close(&from_usda, &from_usdc);
    Ok(())
}

/// Converts usda text to another encoding with Pixar's `Sdf.Layer.Export`.
fn pixar_convert(usda: &str, extension: &str) -> Result<Vec<u8>> {
    let dir = temp_dir(&format!("convert-{extension}"));
    let input = dir.join("in.usda");
    let output = dir.join(format!("out.{extension}"));
    std::fs::write(&input, usda)?;
    let script = "import sys\nfrom pxr import Sdf\nassert Sdf.Layer.FindOrOpen(sys.argv[1]).Export(sys.argv[2])\n";
    let status = Command::new(tools_python())
        .args(["-c", script])
        .arg(&input)
        .arg(&output)
        .status()?;
    if !status.success() {
        bail!("pixar conversion to {extension} failed");
    }
    let bytes = std::fs::read(&output)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(bytes)
}

#[test]
fn bad_usd_gives_clear_errors_without_panicking() -> Result<()> {
    // Not USD at all.
    let err = import_usd(b"hello, world").unwrap_err();
    assert!(matches!(err, UsdImportError::NotUsd { .. }), "{err}");

    // Garbage after a valid magic.
    let err =
        import_usd(b"#usda 1.0\ndef Mesh \"X\" { int[] faceVertexCounts = [3, }\n").unwrap_err();
    assert!(matches!(err, UsdImportError::Open { .. }), "{err}");

    // A truncated usdc, cut at many places.
    let scene = testmodels::primitives_scene();
    let usdc = pixar_convert(&export_usda(&scene), "usdc")?;
    assert!(import_usd(&usdc).is_ok());
    for cut in [9, 16, 64, usdc.len() / 3, usdc.len() / 2, usdc.len() - 10] {
        let err = import_usd(&usdc[..cut]).expect_err("truncated usdc must fail");
        assert!(!err.to_string().is_empty());
    }
    // A usdz that is not a zip.
    assert!(import_usd(b"PK\x03\x04 definitely not a zip").is_err());

    // A reference to a prim that does not exist names the referencing prim or layer.
    let missing_prim =
        "#usda 1.0\ndef Xform \"A\" (\n    prepend references = </Nowhere>\n)\n{\n}\n";
    let err = import_usd(missing_prim.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("/A") || err.to_string().contains("Nowhere"),
        "{err}"
    );
    // A reference to another file: only the given bytes are part of the model.
    let missing_file = "#usda 1.0\ndef Xform \"B\" (\n    prepend references = @parts/bolt.usda@</Bolt>\n)\n{\n}\n";
    let err = import_usd(missing_file.as_bytes()).unwrap_err();
    assert!(matches!(err, UsdImportError::Composition { .. }), "{err}");
    assert!(err.to_string().contains("bolt.usda"), "{err}");

    // Out-of-range indices name the mesh prim.
    let bad_index = "#usda 1.0\ndef Mesh \"Broken\"\n{\n    int[] faceVertexCounts = [3]\n    int[] faceVertexIndices = [0, 1, 7]\n    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n}\n";
    let err = import_usd(bad_index.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("/Broken"), "{err}");
    assert!(err.to_string().contains("out of range"), "{err}");

    // No meshes at all.
    let err = import_usd(b"#usda 1.0\ndef Xform \"Empty\"\n{\n}\n").unwrap_err();
    assert!(matches!(err, UsdImportError::Empty), "{err}");
    Ok(())
}

#[test]
fn import_limits_stop_oversized_models() -> Result<()> {
    let usda = export_usda(&testmodels::bearing_scene(0.05));
    let limits = ImportLimits {
        max_instances: 10,
        ..ImportLimits::default()
    };
    let err = import_usd_with_limits(usda.as_bytes(), &limits).unwrap_err();
    assert!(matches!(err, UsdImportError::TooLarge { .. }), "{err}");
    let limits = ImportLimits {
        max_unique_triangles: 100,
        ..ImportLimits::default()
    };
    let err = import_usd_with_limits(usda.as_bytes(), &limits).unwrap_err();
    assert!(matches!(err, UsdImportError::TooLarge { .. }), "{err}");
    Ok(())
}

#[test]
fn reset_xform_stack_ignores_the_parent_transform() -> Result<()> {
    let usda = r#"#usda 1.0
(
    metersPerUnit = 1
    upAxis = "Y"
)
def Xform "Parent"
{
    double3 xformOp:translate = (5, 0, 0)
    uniform token[] xformOpOrder = ["xformOp:translate"]
    def Mesh "Child"
    {
        double3 xformOp:translate = (0, 1, 0)
        uniform token[] xformOpOrder = ["!resetXformStack!", "xformOp:translate"]
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    }
}
"#;
    let scene = import_usd(usda.as_bytes())?;
    let origin = scene.instances[0].transform.transform_point(Vec3::ZERO);
    assert_eq!(origin, Vec3::new(0.0, 1.0, 0.0));
    assert_eq!(scene.instances[0].transform, Affine::translation(origin));
    Ok(())
}

/// An RGBA PNG of `n` x `n` texels: a colour ramp whose alpha falls across the image.
fn ramp_png(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, n, n);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let data: Vec<u8> = (0..n * n)
            .flat_map(|i| {
                let (x, y) = (i % n, i / n);
                [
                    (x * 255 / (n - 1)) as u8,
                    (y * 255 / (n - 1)) as u8,
                    128,
                    255 - (x * 100 / (n - 1)) as u8,
                ]
            })
            .collect();
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// The textures two scenes' first materials draw with agree: the same lookup settings and the
/// same texels (within 8-bit rounding).
fn assert_same_base_color_texture(a: &Scene, b: &Scene) {
    let (ma, mb) = (
        &a.materials[a.meshes[0].triangle_materials[0] as usize],
        &b.materials[b.meshes[0].triangle_materials[0] as usize],
    );
    let (ra, rb) = (
        ma.base_color_texture.expect("textured"),
        mb.base_color_texture.expect("the texture came back"),
    );
    assert_eq!(ra.wrap, rb.wrap);
    assert_eq!(ra.uv_set, rb.uv_set);
    for uv in [[0.1, 0.2], [0.7, 0.9]] {
        let (pa, pb) = (ra.transform.apply(uv), rb.transform.apply(uv));
        assert!((pa[0] - pb[0]).abs() < 1e-5 && (pa[1] - pb[1]).abs() < 1e-5);
    }
    let (ta, tb) = (&a.textures[ra.texture], &b.textures[rb.texture]);
    assert_eq!((ta.width, ta.height), (tb.width, tb.height));
    for (x, y) in ta.texels.iter().zip(&tb.texels) {
        for c in 0..3 {
            // Factor and texel: the writer folds the factor into the lookup's scale.
            let va = x[c] * ra.scale[c] * ma.base_color[c] + ra.bias[c];
            let vb = y[c] * rb.scale[c] * mb.base_color[c] + rb.bias[c];
            assert!((va - vb).abs() < 0.01, "{va} vs {vb}");
        }
    }
    let mean = |m: &Scene| m.meshes[0].uvs.as_ref().map(|uv| uv.len());
    assert_eq!(mean(a), mean(b));
}

#[test]
fn textures_are_packaged_into_usdz_and_written_beside_usda_and_read_back() -> Result<()> {
    let glb = testmodels::hostile::textured_cube_glb(&ramp_png(16), "image/png");
    let original = import_gltf(&glb)?;
    assert!(
        original.materials[0].base_color_texture.is_some(),
        "the test model is textured"
    );

    let usdz = export_usdz(&original);
    let report = pixar_check("textured.usdz", &usdz)?;
    assert_report_matches_scene(&report, &original);
    let back = import_usd(&usdz)?;
    assert_same_base_color_texture(&original, &back);

    let written = export_usda_with_textures(&original, &UsdWriteOptions::default());
    assert_eq!(written.textures.len(), 1);
    assert!(written.usda.contains("@textures/texture_0.png@"));
    pixar_check_with("textured.usda", written.usda.as_bytes(), &written.textures)?;
    let dir = temp_dir("textured-usda");
    std::fs::write(dir.join("model.usda"), &written.usda)?;
    for (name, data) in &written.textures {
        std::fs::create_dir_all(dir.join(name).parent().unwrap())?;
        std::fs::write(dir.join(name), data)?;
    }
    let from_folder = import_usd(&read_usd_model(
        &dir.join("model.usda"),
        &ImportLimits::default(),
    )?)?;
    assert_same_base_color_texture(&original, &from_folder);
    std::fs::remove_dir_all(&dir).ok();

    // GLB -> USDZ -> GLB keeps the texture.
    let round = import_gltf(&export_glb(&back))?;
    assert_same_base_color_texture(&original, &round);

    // Without files beside it, the usda stays self-contained: no texture is named.
    assert!(!export_usda(&original).contains("UsdUVTexture"));
    Ok(())
}
