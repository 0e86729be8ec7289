//! Real-world and generated multi-file USD: composition across files, implicit surfaces,
//! UsdPreviewSurface textures and fallbacks, each stage compared with what Pixar's usd-core
//! composes and draws (`tests/usd_stage.py`, run with the project's tools Python as in
//! `tests/usd.rs`).
//!
//! The public assets are read from `../shared/assets/usd` beside the workspace (see its
//! README); the tests fail, never skip, when they are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lightbox_scene::export::export_glb;
use lightbox_scene::math::{Aabb, Vec3};
use lightbox_scene::resources::DirResources;
use lightbox_scene::usd::{import_usd_report, UsdImport, UsdImportError};
use lightbox_scene::usd_files::{collect_usd_files, read_usd_model, UsdFileLimits};
use lightbox_scene::usd_write::package_usdz;
use lightbox_scene::{import_gltf, ImportLimits, Scene};
use serde_json::Value;

fn tools_python() -> PathBuf {
    match std::env::var_os("LIGHTBOX_TOOLS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python"),
    }
}

/// `../shared/assets/usd` beside the workspace; a missing folder fails the test.
fn assets() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets/usd");
    assert!(
        dir.is_dir(),
        "the shared USD assets are missing: expected them at {} (see ../shared/assets/README.md)",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lightbox-usd-assets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// usd-core's view of each stage (see `tests/usd_stage.py`), keyed by path.
fn pixar_reports(paths: &[PathBuf]) -> Result<BTreeMap<PathBuf, Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usd_stage.py");
    let out = Command::new(tools_python())
        .arg(&script)
        .args(paths)
        .output()
        .with_context(|| {
            format!(
                "running {} (install the tools with tools/setup.sh, or set LIGHTBOX_TOOLS_PYTHON)",
                tools_python().display()
            )
        })?;
    if !out.status.success() {
        bail!("usd-core failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    Ok(paths.iter().cloned().zip(reports).collect())
}

/// Imports the stage at `root` (relative to `folder`) with the files it names from `folder`.
fn import_from(folder: &Path, root: &str) -> Result<UsdImport, UsdImportError> {
    let bytes = std::fs::read(folder.join(root)).unwrap();
    let files = collect_usd_files(
        root,
        bytes,
        &DirResources::new(folder).unwrap(),
        &UsdFileLimits::default(),
    )?;
    import_usd_report(&files.into_model_bytes(), &ImportLimits::default())
}

/// Pixar's world box in the importer's frame: metres, Y up.
fn pixar_bounds(report: &Value) -> Aabb {
    let v = |key: &str| -> Vec3 {
        let a: Vec<f64> = serde_json::from_value(report[key].clone()).unwrap();
        Vec3::new(a[0] as f32, a[1] as f32, a[2] as f32)
    };
    let (lo, hi) = (v("bounds_min"), v("bounds_max"));
    let (lo, hi) = if report["up_axis"] == "Z" {
        // (x, y, z) Z-up is (x, z, -y) Y-up.
        (Vec3::new(lo.x, lo.z, -hi.y), Vec3::new(hi.x, hi.z, -lo.y))
    } else {
        (lo, hi)
    };
    let mpu = report["meters_per_unit"].as_f64().unwrap() as f32;
    Aabb {
        min: lo * mpu,
        max: hi * mpu,
    }
}

/// The scene draws what usd-core draws: as many gprim placements, within the same bounds
/// (tessellated curved surfaces touch their extent, so the boxes agree closely).
fn assert_matches_pixar(name: &str, scene: &Scene, report: &Value) {
    assert_eq!(
        report["composition_errors"].as_array().map(Vec::len),
        Some(0),
        "{name}: usd-core reports composition errors: {report}"
    );
    assert_eq!(
        scene.instances.len() as u64,
        report["placements"].as_u64().unwrap(),
        "{name}: gprim placements (usd-core draws {})",
        report["gprims"]
    );
    let ours = scene.bounds();
    let theirs = pixar_bounds(report);
    let scale = theirs.diagonal().length().max(1e-6);
    let d = (ours.min - theirs.min).length() + (ours.max - theirs.max).length();
    assert!(
        d <= 2e-3 * scale,
        "{name}: bounds {ours:?} vs usd-core's {theirs:?}"
    );
}

#[test]
fn composition_across_files_matches_usd_core() -> Result<()> {
    let assets = assets();
    let composition = assets.join("foundation/stage_composition");
    // (folder the files are read from, root layer inside it). The parent-folder cases read
    // from stage_composition itself: a file never reaches above the folder it is read from.
    let cases: Vec<(PathBuf, &str)> = vec![
        (composition.clone(), "payload/payload_same_folder.usda"),
        (composition.clone(), "payload/payload_child_folder.usda"),
        (composition.clone(), "payload/payload_parent_folder.usda"),
        (composition.clone(), "references/reference_same_folder.usda"),
        (
            composition.clone(),
            "references/reference_child_folder.usda",
        ),
        (
            composition.clone(),
            "references/reference_parent_folder.usda",
        ),
        (composition.clone(), "subLayer/sublayer_same_folder.usda"),
        (composition.clone(), "subLayer/sublayer_child_folder.usda"),
        (composition.clone(), "subLayer/sublayer_parent_folder.usda"),
        (composition.clone(), "active.usda"),
        (composition.clone(), "class_inherit.usda"),
        (composition.clone(), "inherit_and_specialize.usda"),
        (composition.clone(), "over.usda"),
        (composition.clone(), "purpose.usda"),
        (
            assets.join("CompositionPuzzles/PayloadAndReference/solution"),
            "shot.usda",
        ),
        (
            assets.join("CompositionPuzzles/VariantSetAndLocal2"),
            "puzzle_2.usda",
        ),
    ];
    let paths: Vec<PathBuf> = cases.iter().map(|(d, r)| d.join(r)).collect();
    let reports = pixar_reports(&paths)?;
    for ((dir, root), path) in cases.iter().zip(&paths) {
        let import = import_from(dir, root).with_context(|| root.to_string())?;
        assert_matches_pixar(root, &import.scene, &reports[path]);
    }

    // The variant puzzle: the radius authored locally in the weaker sublayer beats the
    // "small" variant selected in the stronger one (local opinions outrank variants).
    let puzzle = import_from(
        &assets.join("CompositionPuzzles/VariantSetAndLocal2"),
        "puzzle_2.usda",
    )?;
    let b = puzzle.scene.bounds();
    assert!((b.max.x - 0.01).abs() < 1e-5, "radius 1 cm: {b:?}");
    Ok(())
}

#[test]
fn the_invalid_composition_cases_fail_naming_the_missing_file() {
    let composition = assets().join("foundation/stage_composition");
    for (root, named_by, arc) in [
        (
            "payload/payload_invalid.usda",
            "payload/payload_invalid.usda",
            "payload on /World/invalid_payload",
        ),
        (
            "references/reference_invalid.usda",
            "references/reference_invalid.usda",
            "reference on /World/invalid_reference",
        ),
        (
            "subLayer/sublayer_invalid.usda",
            "subLayer/sublayer_invalid.usda",
            "sublayer",
        ),
        (
            "references_prim/reference_prim_in_other_file.usda",
            "references_prim/reference_prim_in_other_file.usda",
            "reference on /World/Cube_invalid_file_reference",
        ),
    ] {
        let err = match import_from(&composition, root) {
            Ok(_) => panic!("{root} imported"),
            Err(err) => err,
        };
        let message = err.to_string();
        assert!(
            matches!(err, UsdImportError::Composition { .. }),
            "{root}: {message}"
        );
        let folder = root.rsplit_once('/').unwrap().0;
        assert!(
            message.contains(&format!("{folder}/file_does_not_exist.usda is missing")),
            "{root}: {message}"
        );
        assert!(message.contains(arc), "{root}: {message}");
        assert!(message.contains(named_by), "{root}: {message}");
    }
    // stage_configuration's files all name `_common/axis.usda` three folders up, which the
    // public copy lacks: they fail naming it, as outside the folder they are read from.
    let configuration = assets().join("foundation/stage_configuration");
    for root in [
        "upAxis/upAxis_Y.usda",
        "upAxis/upAxis_Z.usda",
        "metersPerUnit/metersPerUnit_10.usda",
    ] {
        let err = import_from(&configuration, root)
            .err()
            .unwrap_or_else(|| panic!("{root} imported without its sublayer"));
        let message = err.to_string();
        assert!(
            message.contains("_common/axis.usda is outside the model's folder")
                && message.contains(&format!("sublayer in {root}")),
            "{root}: {message}"
        );
    }
    // A reference to a prim the file does not have names the prim.
    let err = import_from(
        &composition,
        "references_prim/reference_prim_in_same_file.usda",
    )
    .expect_err("a reference to a missing prim fails");
    assert!(
        err.to_string()
            .contains("</World/cube> which does not exist"),
        "{err}"
    );
    // Read from its own folder, a file that names one above it is refused as outside.
    let err = import_from(&composition.join("payload"), "payload_parent_folder.usda")
        .expect_err("a payload above the model's folder is not read");
    assert!(
        err.to_string()
            .contains("../_parent_stage.usda is outside the model's folder"),
        "{err}"
    );
}

/// A generated multi-file stage: a sublayer, a payload per variant (the selected one drawn),
/// a reference into a sub-folder whose own reference climbs back up, and a texture beside it.
fn write_multi_file_stage(dir: &Path) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "shot.usda",
        r#"#usda 1.0
(
    defaultPrim = "World"
    metersPerUnit = 1
    upAxis = "Y"
    subLayers = [@layers/lights.usda@]
)

def Xform "World"
{
    def Xform "Chess" (
        variants = {
            string pieces = "knight"
        }
        prepend variantSets = "pieces"
    )
    {
        variantSet "pieces" = {
            "knight" (
                prepend payload = @pieces/knight.usda@
            ) {
            }
            "pawn" (
                prepend payload = @pieces/pawn.usda@
            ) {
            }
        }
    }

    def "Board" (
        prepend references = @props/board.usda@
    )
    {
        double3 xformOp:translate = (0, -1, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
}
"#,
    );
    write(
        "layers/lights.usda",
        r#"#usda 1.0
over "World"
{
    def Sphere "Lamp"
    {
        double radius = 0.5
        double3 xformOp:translate = (0, 5, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
}
"#,
    );
    write(
        "pieces/knight.usda",
        r#"#usda 1.0
(
    defaultPrim = "Knight"
)
def Xform "Knight"
{
    def Cone "Body"
    {
        double radius = 0.5
        double height = 2
        uniform token axis = "Y"
    }
}
"#,
    );
    write(
        "pieces/pawn.usda",
        r#"#usda 1.0
(
    defaultPrim = "Pawn"
)
def Xform "Pawn"
{
    def Cylinder "Body"
    {
        double radius = 3
        double height = 1
    }
}
"#,
    );
    write(
        "props/board.usda",
        r#"#usda 1.0
(
    defaultPrim = "Board"
)
def Xform "Board"
{
    def Cube "Top" (
        prepend apiSchemas = ["MaterialBindingAPI"]
        prepend references = @../props/board_geom.usda@</Geom>
    )
    {
        rel material:binding = </Board/Looks/Wood>
    }

    def Scope "Looks"
    {
        def Material "Wood"
        {
            token outputs:surface.connect = </Board/Looks/Wood/Surface.outputs:surface>
            def Shader "Surface"
            {
                uniform token info:id = "UsdPreviewSurface"
                color3f inputs:diffuseColor.connect = </Board/Looks/Wood/Tex.outputs:rgb>
                token outputs:surface
            }
            def Shader "Tex"
            {
                uniform token info:id = "UsdUVTexture"
                asset inputs:file = @textures/wood grain.png@
                float3 outputs:rgb
            }
        }
    }
}
"#,
    );
    write(
        "props/board_geom.usda",
        r#"#usda 1.0
def "Geom"
{
    double size = 4
}
"#,
    );
    std::fs::create_dir_all(dir.join("props/textures")).unwrap();
    std::fs::write(
        dir.join("props/textures/wood grain.png"),
        checker_png(8, [200, 120, 40], [60, 30, 10]),
    )
    .unwrap();
}

/// An RGB PNG checkerboard of `n` x `n` texels.
fn checker_png(n: u32, a: [u8; 3], b: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, n, n);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let data: Vec<u8> = (0..n * n)
            .flat_map(|i| {
                if (i % n + i / n).is_multiple_of(2) {
                    a
                } else {
                    b
                }
            })
            .collect();
        writer.write_image_data(&data).unwrap();
    }
    out
}

#[test]
fn a_generated_multi_file_stage_with_a_payload_variant_and_textures_matches_usd_core() -> Result<()>
{
    let dir = temp_dir("multi");
    write_multi_file_stage(&dir);
    let root = dir.join("shot.usda");
    let bytes = read_usd_model(&root, &ImportLimits::default())?;
    assert!(bytes.starts_with(b"PK"), "the files travel as one package");
    let import = import_usd_report(&bytes, &ImportLimits::default())?;
    assert!(import.warnings.is_empty(), "{:?}", import.warnings);
    let reports = pixar_reports(std::slice::from_ref(&root))?;
    assert_matches_pixar("shot.usda", &import.scene, &reports[&root]);
    // The selected variant's payload (the cone) is drawn, the other one not.
    assert_eq!(reports[&root]["gprims"]["Cone"], 1);
    assert!(reports[&root]["gprims"].get("Cylinder").is_none());
    // The board's texture, found beside the layer that names it (a name with a space).
    assert_eq!(import.scene.textures.len(), 1);
    let wood = import
        .scene
        .materials
        .iter()
        .find(|m| m.name.as_deref() == Some("Wood"))
        .expect("the board's material");
    let tex = wood.base_color_texture.expect("textured diffuse colour");
    assert_eq!(wood.base_color[..3], [1.0; 3]);
    let texel = import.scene.textures[tex.texture].texels[0];
    assert!(
        (texel[0] - 0.578).abs() < 0.01,
        "sRGB 200 decodes to linear 0.578: {texel:?}"
    );

    // A missing file names itself and the layer that wanted it.
    std::fs::remove_file(dir.join("pieces/knight.usda"))?;
    let err = import_usd_report(
        &read_usd_model(&root, &ImportLimits::default())?,
        &ImportLimits::default(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("pieces/knight.usda is missing")
            && message.contains("payload on /World/Chess{pieces=knight}")
            && message.contains("shot.usda"),
        "{message}"
    );
    // The other variant's payload is not needed and not missing: selecting it imports.
    let text = std::fs::read_to_string(&root)?
        .replace("string pieces = \"knight\"", "string pieces = \"pawn\"");
    std::fs::write(&root, text)?;
    let pawn = import_usd_report(
        &read_usd_model(&root, &ImportLimits::default())?,
        &ImportLimits::default(),
    )?;
    assert!(
        pawn.scene.bounds().max.x > 2.9,
        "the pawn is 3 m wide: {:?}",
        pawn.scene.bounds()
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn implicit_surfaces_are_tessellated_to_usd_cores_extents() -> Result<()> {
    let dir = temp_dir("gprims");
    let path = dir.join("gprims.usda");
    std::fs::write(
        &path,
        r#"#usda 1.0
(
    metersPerUnit = 1
    upAxis = "Z"
)
def Xform "Shapes"
{
    def Cube "Cube"
    {
        double size = 3
    }
    def Sphere "Sphere"
    {
        double radius = 2
        double3 xformOp:translate = (5, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Cylinder "Cylinder"
    {
        uniform token axis = "X"
        double3 xformOp:translate = (0, 6, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Cone "Cone"
    {
        double height = 4
        double3 xformOp:translate = (0, 0, 7)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Capsule "Capsule"
    {
        uniform token axis = "Y"
        double3 xformOp:translate = (-6, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Plane "Plane"
    {
        double width = 8
        double length = 1
        double3 xformOp:translate = (0, -8, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Cube "Guide"
    {
        uniform token purpose = "guide"
        double size = 100
    }
}
"#,
    )?;
    let reports = pixar_reports(std::slice::from_ref(&path))?;
    let import = import_usd_report(&std::fs::read(&path)?, &ImportLimits::default())?;
    assert_matches_pixar("gprims.usda", &import.scene, &reports[&path]);
    assert_eq!(import.scene.instances.len(), 6);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn a_binding_to_a_missing_material_falls_back_with_a_warning() -> Result<()> {
    let usda = br#"#usda 1.0
def Cube "Box" (
    prepend apiSchemas = ["MaterialBindingAPI"]
)
{
    rel material:binding = </Looks/Gone>
    color3f[] primvars:displayColor = [(0.1, 0.6, 0.2)]
}
"#;
    let import = import_usd_report(usda, &ImportLimits::default())?;
    assert_eq!(import.scene.instances.len(), 1);
    let m = &import.scene.materials[import.scene.meshes[0].triangle_materials[0] as usize];
    assert_eq!(
        m.base_color[..3],
        [0.1, 0.6, 0.2],
        "displayColor is the fallback"
    );
    assert_eq!(import.warnings.len(), 1, "{:?}", import.warnings);
    assert!(
        import.warnings[0].contains("/Looks/Gone"),
        "{:?}",
        import.warnings
    );
    Ok(())
}

/// A usdz with a textured material whose second texture is missing: the authored values and
/// the missing texture's authored fallback are kept, and the package passes usd-core's checks.
#[test]
fn a_usdz_with_textures_imports_them_and_keeps_authored_fallbacks() -> Result<()> {
    let usda = r#"#usda 1.0
(
    defaultPrim = "Tile"
    metersPerUnit = 1
    upAxis = "Y"
)
def Xform "Tile" (
    kind = "component"
)
{
    def Mesh "Quad" (
        prepend apiSchemas = ["MaterialBindingAPI"]
    )
    {
        int[] faceVertexCounts = [4]
        int[] faceVertexIndices = [0, 1, 2, 3]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
        float3[] extent = [(0, 0, 0), (1, 1, 0)]
        texCoord2f[] primvars:uv = [(0, 0), (1, 0), (1, 1), (0, 1)] (
            interpolation = "vertex"
        )
        rel material:binding = </Tile/Looks/Painted>
    }
    def Scope "Looks"
    {
        def Material "Painted"
        {
            token inputs:frame:uvName = "uv"
            token outputs:surface.connect = </Tile/Looks/Painted/Surface.outputs:surface>
            def Shader "Surface"
            {
                uniform token info:id = "UsdPreviewSurface"
                color3f inputs:diffuseColor.connect = </Tile/Looks/Painted/Color.outputs:rgb>
                float inputs:roughness.connect = </Tile/Looks/Painted/Rough.outputs:g>
                float inputs:metallic = 0.25
                token outputs:surface
            }
            def Shader "Reader"
            {
                uniform token info:id = "UsdPrimvarReader_float2"
                token inputs:varname.connect = </Tile/Looks/Painted.inputs:frame:uvName>
                float2 outputs:result
            }
            def Shader "Place"
            {
                uniform token info:id = "UsdTransform2d"
                float2 inputs:in.connect = </Tile/Looks/Painted/Reader.outputs:result>
                float2 inputs:scale = (2, 2)
                float2 outputs:result
            }
            def Shader "Color"
            {
                uniform token info:id = "UsdUVTexture"
                asset inputs:file = @textures/paint.png@
                float2 inputs:st.connect = </Tile/Looks/Painted/Place.outputs:result>
                token inputs:wrapS = "mirror"
                token inputs:wrapT = "clamp"
                float4 inputs:scale = (0.5, 0.5, 0.5, 1)
                float3 outputs:rgb
            }
            def Shader "Rough"
            {
                uniform token info:id = "UsdUVTexture"
                asset inputs:file = @textures/missing.png@
                float4 inputs:fallback = (0.1, 0.7, 0.3, 1)
                float2 inputs:st.connect = </Tile/Looks/Painted/Reader.outputs:result>
                token inputs:sourceColorSpace = "raw"
                float outputs:g
            }
        }
    }
}
"#;
    let usdz = package_usdz(&[
        ("tile.usda", usda.as_bytes()),
        (
            "textures/paint.png",
            &checker_png(4, [255, 255, 255], [0, 0, 0]),
        ),
    ]);
    let dir = temp_dir("usdz");
    let path = dir.join("tile.usdz");
    std::fs::write(&path, &usdz)?;
    let reports = pixar_reports(std::slice::from_ref(&path))?;
    let import = import_usd_report(&usdz, &ImportLimits::default())?;
    assert_matches_pixar("tile.usdz", &import.scene, &reports[&path]);

    let mesh = &import.scene.meshes[0];
    assert_eq!(
        mesh.uvs.as_deref(),
        Some(&[[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]][..]),
        "primvars:uv (named through the material's interface input), t flipped to v"
    );
    let m = &import.scene.materials[mesh.triangle_materials[0] as usize];
    let color = m.base_color_texture.expect("diffuse texture");
    assert_eq!(
        color.wrap,
        [lightbox_scene::Wrap::Mirror, lightbox_scene::Wrap::Clamp]
    );
    assert_eq!(
        color.scale,
        [0.5, 0.5, 0.5, 0.0],
        "colour scale kept, alpha not coverage"
    );
    assert_eq!(color.uv_set, 0);
    // UsdTransform2d scale 2 about st's origin (bottom-left): uv (0, 1) stays, (0.5, 1) -> (1, 1).
    assert_eq!(color.transform.apply([0.0, 1.0]), [0.0, 1.0]);
    assert_eq!(color.transform.apply([0.5, 1.0]), [1.0, 1.0]);
    assert_eq!(m.metallic, 0.25);
    // The missing roughness texture: its authored fallback's green, not the 0.5 default.
    assert!(m.roughness_texture.is_none());
    assert!((m.roughness - 0.7).abs() < 1e-6, "{}", m.roughness);
    assert!(
        import
            .warnings
            .iter()
            .any(|w| w.contains("textures/missing.png")),
        "{:?}",
        import.warnings
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn real_textured_assets_import_their_textures_and_match_usd_core() -> Result<()> {
    let assets = assets();
    let cases = [
        ("TextureTransformTest", "TextureTransformTest.usd"),
        (
            "NormalsTextureBiasAndScale",
            "NormalsTextureBiasAndScale.usda",
        ),
        (
            "NormalsTextureBiasAndScale",
            "NormalsTextureBiasAndScale.usdz",
        ),
        ("RoughnessTest", "RoughnessTest.usdz"),
        ("AlphaBlendModeTest", "AlphaBlendModeTest.usd"),
    ];
    let paths: Vec<PathBuf> = cases.iter().map(|(d, f)| assets.join(d).join(f)).collect();
    let reports = pixar_reports(&paths)?;
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = read_usd_model(path, &ImportLimits::default()).with_context(|| name.clone())?;
        let import =
            import_usd_report(&bytes, &ImportLimits::default()).with_context(|| name.clone())?;
        assert_matches_pixar(&name, &import.scene, &reports[path]);
        assert!(!import.scene.textures.is_empty(), "{name}: no textures");
        let textured = import
            .scene
            .materials
            .iter()
            .filter(|m| !m.texture_refs().is_empty())
            .count();
        assert!(textured > 0, "{name}: no textured material");
        // Through a GLB (how the isolated reader hands its scene back) every texture slot of
        // every material survives.
        let through_glb = import_gltf(&export_glb(&import.scene)).with_context(|| name.clone())?;
        // (glTF holds metallic and roughness in one image: a texture for either is one for both.)
        let slots = |scene: &Scene| -> Vec<[bool; 5]> {
            scene
                .materials
                .iter()
                .map(|m| {
                    [
                        m.base_color_texture.is_some() || m.opacity_texture.is_some(),
                        m.metallic_texture.is_some() || m.roughness_texture.is_some(),
                        m.normal_texture.is_some(),
                        m.occlusion_texture.is_some(),
                        m.emissive_texture.is_some(),
                    ]
                })
                .collect()
        };
        let ours = slots(&import.scene);
        // (The glTF reader may add its default material after ours.)
        assert_eq!(
            slots(&through_glb)[..ours.len()],
            ours[..],
            "{name}: texture slots through GLB"
        );
        match name.as_str() {
            "TextureTransformTest.usd" => {
                // Nine materials, each with its diffuse texture and its own transform.
                assert_eq!(textured, 9, "{name}");
                assert!(import.warnings.is_empty(), "{name}: {:?}", import.warnings);
            }
            "NormalsTextureBiasAndScale.usda" | "NormalsTextureBiasAndScale.usdz" => {
                let normal_maps: Vec<_> = import
                    .scene
                    .materials
                    .iter()
                    .filter_map(|m| m.normal_texture)
                    .collect();
                assert_eq!(normal_maps.len(), 3, "{name}");
                assert!(normal_maps
                    .iter()
                    .any(|t| t.scale == [-2.0, 2.0, 1.0, 2.0] && t.bias == [1.0, -1.0, 0.0, -1.0]));
                assert!(
                    import.scene.meshes.iter().all(|m| m.tangents.is_some()),
                    "{name}: tangents for the normal maps"
                );
            }
            "RoughnessTest.usdz" => {
                // Three materials read roughness from the packed textures (one a .tga).
                let rough = import
                    .scene
                    .materials
                    .iter()
                    .filter(|m| m.roughness_texture.is_some())
                    .count();
                assert_eq!(rough, 3, "{name}: {:?}", import.warnings);
            }
            "AlphaBlendModeTest.usd" => {
                // image0 is missing from the public copy: a warning, and the rest imports.
                assert!(
                    import
                        .warnings
                        .iter()
                        .any(|w| w.contains("AlphaBlendModeTest_image0")),
                    "{name}: {:?}",
                    import.warnings
                );
                assert!(import
                    .scene
                    .materials
                    .iter()
                    .any(|m| m.alpha_mode == lightbox_scene::AlphaMode::Blend));
                assert!(import
                    .scene
                    .materials
                    .iter()
                    .any(|m| matches!(m.alpha_mode, lightbox_scene::AlphaMode::Mask { .. })));
            }
            _ => unreachable!(),
        }
    }
    Ok(())
}
