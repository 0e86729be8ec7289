//! glTF as people ship it, read through the resolvers: a multi-file `.gltf` (WaterBottle: an
//! external `.bin` and four 2048² PNGs), data URIs, Draco and meshopt compression with mesh
//! quantization (`../shared/assets/gltf/compressed`), bundling into one GLB, and the references
//! that must be refused (a path out of the folder, an absolute path, a link out, a missing
//! sibling, files over the budget).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use lightbox_scene::gltf_decode::{external_files, pack_glb};
use lightbox_scene::resources::{ResourceError, ResourcePath};
use lightbox_scene::{
    import_gltf, import_gltf_with_resources, DirResources, ImportError, ImportLimits,
    MemoryResources, Resources, Scene,
};
use serde_json::{json, Value};

/// `../shared/assets/gltf` beside the workspace; the suite fails loudly without it.
fn assets() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets/gltf");
    assert!(
        dir.join("WaterBottle/PF_WaterBottle_MR.gltf").is_file()
            && dir.join("compressed/BoxDraco.gltf").is_file(),
        "the shared assets are missing: expected them in {} (see ../shared/assets/README.md)",
        dir.display()
    );
    dir
}

fn water_bottle() -> PathBuf {
    assets().join("WaterBottle/PF_WaterBottle_MR.gltf")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn import_file(path: &Path) -> Result<Scene, ImportError> {
    import_gltf_with_resources(
        &read(path),
        &DirResources::beside(path).unwrap(),
        &ImportLimits::default(),
    )
}

/// The error and all its sources, as the function and the CLI print them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// A resolver that records what it was asked for.
struct Recording<R> {
    inner: R,
    reads: RefCell<Vec<String>>,
}

impl<R: Resources> Resources for Recording<R> {
    fn read(&self, path: &ResourcePath, max_bytes: u64) -> Result<Vec<u8>, ResourceError> {
        self.reads.borrow_mut().push(path.to_string());
        self.inner.read(path, max_bytes)
    }
}

/// A fresh folder under the system temp folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("lightbox-gltf-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// World-space triangles, each as its three corners rounded to 1/1000 and sorted, the list
/// sorted: equal for two scenes that show the same surfaces however they are stored.
fn world_triangles(scene: &Scene) -> Vec<[[i32; 3]; 3]> {
    let mut out = Vec::new();
    for instance in &scene.instances {
        let mesh = &scene.meshes[instance.mesh];
        for triangle in &mesh.triangles {
            let mut corners = triangle.map(|i| {
                let p = instance
                    .transform
                    .transform_point(lightbox_scene::math::Vec3::from_array(
                        mesh.positions[i as usize],
                    ))
                    .to_array();
                p.map(|c| (c * 1000.0).round() as i32)
            });
            corners.sort();
            out.push(corners);
        }
    }
    out.sort();
    out
}

#[test]
fn a_multi_file_gltf_imports_with_its_buffer_and_four_textures() {
    let path = water_bottle();
    let files = Recording {
        inner: DirResources::beside(&path).unwrap(),
        reads: RefCell::new(Vec::new()),
    };
    let scene = import_gltf_with_resources(&read(&path), &files, &ImportLimits::default()).unwrap();
    let mut reads = files.reads.into_inner();
    reads.sort();
    assert_eq!(
        reads,
        [
            "PF_WaterBottle_MR.bin",
            "PF_WaterBottle_MR_baseColor.png",
            "PF_WaterBottle_MR_emissive.png",
            "PF_WaterBottle_MR_normal.png",
            "PF_WaterBottle_MR_occlusionRoughnessMetallic.png",
        ],
        "each file is read once"
    );
    assert_eq!(scene.instanced_triangle_count(), 13530 / 3);
    assert_eq!(scene.meshes[0].positions.len(), 2549);
    // The accessor's bounds (±0.1089, ±0.2604, ±0.1089), turned 90° about Y by the node.
    let bounds = scene.bounds();
    for (got, want) in bounds.max.to_array().iter().zip([0.1089, 0.26044, 0.1089]) {
        assert!((got - want).abs() < 1e-3, "{bounds:?}");
    }
    assert!(scene.meshes[0].uvs.is_some() && scene.meshes[0].normals.is_some());
    assert_eq!(
        scene.textures.len(),
        4,
        "base colour, ORM, normal, emissive"
    );
    for texture in &scene.textures {
        assert_eq!((texture.width, texture.height), (2048, 2048));
    }
    let material = &scene.materials[0];
    let base = material
        .base_color_texture
        .as_ref()
        .expect("a base colour texture");
    // The label is not a flat colour: the decoded base colour texture has contrast.
    let texels = &scene.textures[base.texture].texels;
    let luma = |t: &[f32; 4]| 0.2126 * t[0] + 0.7152 * t[1] + 0.0722 * t[2];
    let (lo, hi) = texels
        .iter()
        .map(luma)
        .fold((f32::MAX, f32::MIN), |(lo, hi), l| (lo.min(l), hi.max(l)));
    assert!(hi - lo > 0.3, "base colour luma spans {lo}..{hi}");
}

#[test]
fn a_gltf_given_as_bytes_alone_fails_naming_the_file_it_needs() {
    let err = import_gltf(&read(&water_bottle())).unwrap_err();
    let message = chain(&err);
    assert!(
        matches!(err, ImportError::Resource { .. }) && message.contains("'PF_WaterBottle_MR.bin'"),
        "{message}"
    );
    assert!(message.contains("without the files beside it"), "{message}");
}

#[test]
fn a_missing_sibling_is_an_error_naming_it() {
    let scratch = Scratch::new("missing");
    let source = water_bottle();
    let folder = source.parent().unwrap();
    for name in [
        "PF_WaterBottle_MR.gltf",
        "PF_WaterBottle_MR.bin",
        "PF_WaterBottle_MR_baseColor.png",
    ] {
        std::fs::copy(folder.join(name), scratch.0.join(name)).unwrap();
    }
    let err = import_file(&scratch.0.join("PF_WaterBottle_MR.gltf")).unwrap_err();
    let message = chain(&err);
    assert!(
        message.contains("file 'PF_WaterBottle_MR_occlusionRoughnessMetallic.png' not found")
            && message.contains("image 1"),
        "{message}"
    );
}

/// A one-triangle `.gltf` whose buffer is the given URI.
fn triangle_gltf(buffer_uri: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "asset": {"version": "2.0"},
        "buffers": [{"uri": buffer_uri, "byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }))
    .unwrap()
}

fn triangle_bin() -> Vec<u8> {
    [0f32, 0., 0., 1., 0., 0., 0., 1., 0.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn references_out_of_the_folder_are_refused_before_anything_is_read() {
    let scratch = Scratch::new("escape");
    let model_dir = scratch.0.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::write(scratch.0.join("secret.bin"), triangle_bin()).unwrap();
    std::fs::write(model_dir.join("inside.bin"), triangle_bin()).unwrap();
    std::os::unix::fs::symlink(scratch.0.join("secret.bin"), model_dir.join("link.bin")).unwrap();
    let absolute = scratch.0.join("secret.bin").display().to_string();
    let files = DirResources::new(&model_dir).unwrap();

    let ok = import_gltf_with_resources(
        &triangle_gltf("inside.bin"),
        &files,
        &ImportLimits::default(),
    );
    assert_eq!(
        ok.unwrap().instanced_triangle_count(),
        1,
        "the control imports"
    );

    for (uri, says) in [
        ("../secret.bin", "`..` segment"),
        ("sub/../../secret.bin", "`..` segment"),
        ("%2E%2E/secret.bin", "`..` segment"),
        (absolute.as_str(), "absolute path"),
        (&format!("file://{absolute}"), "not URLs"),
        ("link.bin", "symbolic link out of the model's folder"),
    ] {
        let recording = Recording {
            inner: DirResources::new(&model_dir).unwrap(),
            reads: RefCell::new(Vec::new()),
        };
        let err =
            import_gltf_with_resources(&triangle_gltf(uri), &recording, &ImportLimits::default())
                .unwrap_err();
        let message = chain(&err);
        assert!(
            message.contains("buffer 0") && message.contains(says),
            "{uri}: {message}"
        );
        if uri != "link.bin" {
            // Refused from the URI alone: the resolver was never asked.
            assert!(recording.reads.borrow().is_empty(), "{uri} was read");
            assert!(
                external_files(&triangle_gltf(uri)).is_err(),
                "{uri} was listed"
            );
        }
    }
}

#[test]
fn files_over_the_budget_fail_from_their_size_before_they_are_read() {
    // 1 MiB: the 149 KB buffer fits, the 2.2 MB base colour PNG does not.
    let limits = ImportLimits {
        memory_budget: 1 << 20,
        ..ImportLimits::default()
    };
    let path = water_bottle();
    let err =
        import_gltf_with_resources(&read(&path), &DirResources::beside(&path).unwrap(), &limits)
            .unwrap_err();
    let message = chain(&err);
    assert!(
        message.contains("'PF_WaterBottle_MR_baseColor.png' is 2270715 bytes, over the"),
        "{message}"
    );
    // A declared buffer larger than the budget fails before any read.
    let err = import_gltf_with_resources(
        &triangle_gltf("inside.bin"),
        &Recording {
            inner: MemoryResources::default(),
            reads: RefCell::new(Vec::new()),
        },
        &ImportLimits {
            memory_budget: 10,
            ..ImportLimits::default()
        },
    )
    .unwrap_err();
    assert!(
        chain(&err).contains("need 36 bytes, over the limit of 10 bytes"),
        "{}",
        chain(&err)
    );
}

/// A `.gltf` with every buffer and image as a base64 data URI, made from a GLB.
fn with_data_uris(glb: &[u8]) -> Vec<u8> {
    let (mut json, bin) = lightbox_testmodels::hostile::split_glb(glb).unwrap();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let views = json["bufferViews"].clone();
    for image in json["images"].as_array_mut().into_iter().flatten() {
        let view = &views[image["bufferView"].as_u64().unwrap() as usize];
        let offset = view.get("byteOffset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let length = view["byteLength"].as_u64().unwrap() as usize;
        let mime = image["mimeType"].as_str().unwrap().to_owned();
        let object = image.as_object_mut().unwrap();
        object.remove("bufferView");
        object.remove("mimeType");
        object.insert(
            "uri".into(),
            json!(format!(
                "data:{mime};base64,{}",
                b64(&bin[offset..offset + length])
            )),
        );
    }
    json["buffers"][0]["uri"] = json!(format!(
        "data:application/octet-stream;base64,{}",
        b64(&bin)
    ));
    serde_json::to_vec_pretty(&json).unwrap()
}

fn small_png() -> Vec<u8> {
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, 4, 4);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        let pixels: Vec<u8> = (0..16u8)
            .flat_map(|i| [i * 16, 255 - i * 16, 128])
            .collect();
        writer.write_image_data(&pixels).unwrap();
    }
    png
}

#[test]
fn a_gltf_with_data_uris_imports_as_its_glb_does() {
    let glb = lightbox_testmodels::hostile::textured_cube_glb(&small_png(), "image/png");
    let gltf = with_data_uris(&glb);
    let document: Value = serde_json::from_slice(&gltf).unwrap();
    assert!(document["images"][0]["uri"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert!(external_files(&gltf).unwrap().is_empty());
    let from_glb = import_gltf(&glb).unwrap();
    let from_gltf = import_gltf(&gltf).unwrap();
    assert_eq!(from_gltf.textures.len(), 1);
    assert_eq!(from_gltf.textures, from_glb.textures);
    assert_eq!(world_triangles(&from_gltf), world_triangles(&from_glb));
    assert_eq!(from_gltf.meshes[0].uvs, from_glb.meshes[0].uvs);
    // A data URI that does not decode is an error naming the buffer.
    let broken = String::from_utf8(gltf)
        .unwrap()
        .replacen(";base64,", ";base64,@@", 1);
    let message = chain(&import_gltf(broken.as_bytes()).unwrap_err());
    assert!(
        message.contains("buffer 0") && message.contains("does not decode"),
        "{message}"
    );
}

/// The corners of a 1-unit box centred on the origin.
fn unit_box_corners() -> Vec<[i32; 3]> {
    let mut corners = Vec::new();
    for x in [-500, 500] {
        for y in [-500, 500] {
            for z in [-500, 500] {
                corners.push([x, y, z]);
            }
        }
    }
    corners
}

#[test]
fn draco_and_meshopt_boxes_decode_to_the_same_unit_box() {
    let dir = assets().join("compressed");
    let draco = import_file(&dir.join("BoxDraco.gltf")).unwrap();
    let meshopt_glb = import_gltf(&read(&dir.join("BoxMeshopt.glb"))).unwrap();
    let meshopt_gltf = import_file(&dir.join("BoxMeshopt.gltf")).unwrap();
    let reference = world_triangles(&draco);
    for (name, scene) in [
        ("BoxDraco", &draco),
        ("BoxMeshopt.glb", &meshopt_glb),
        ("BoxMeshopt.gltf", &meshopt_gltf),
    ] {
        assert_eq!(scene.instanced_triangle_count(), 12, "{name}");
        assert_eq!(scene.meshes[0].positions.len(), 24, "{name}");
        let bounds = scene.bounds();
        assert_eq!(bounds.min.to_array(), [-0.5; 3], "{name}");
        assert_eq!(bounds.max.to_array(), [0.5; 3], "{name}");
        // Every corner of every triangle is a corner of the box.
        let corners = unit_box_corners();
        for triangle in world_triangles(scene) {
            assert!(
                triangle.iter().all(|c| corners.contains(c)),
                "{name}: {triangle:?}"
            );
        }
        // Normals (octahedral-filtered bytes for meshopt, Draco floats) are unit and axis-aligned.
        for n in scene.meshes[0].normals.as_ref().unwrap() {
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            assert!((len - 1.0).abs() < 1e-3, "{name}: {n:?}");
            assert_eq!(
                n.iter().filter(|c| c.abs() > 0.99).count(),
                1,
                "{name}: {n:?}"
            );
        }
        assert_eq!(
            world_triangles(scene),
            reference,
            "{name} differs from BoxDraco"
        );
        assert_eq!(
            scene.materials[0].base_color[..3],
            [0.8, 0.0, 0.0],
            "{name}"
        );
    }
}

#[test]
fn a_corrupt_compressed_stream_is_an_error_not_a_crash() {
    let dir = assets().join("compressed");
    let mut bin = read(&dir.join("0.bin"));
    for b in bin.iter_mut().skip(10) {
        *b ^= 0x5a;
    }
    let mut files = MemoryResources::default();
    files.insert("0.bin", bin);
    let err = import_gltf_with_resources(
        &read(&dir.join("BoxDraco.gltf")),
        &files,
        &ImportLimits::default(),
    )
    .unwrap_err();
    assert!(
        chain(&err).contains("KHR_draco_mesh_compression"),
        "{}",
        chain(&err)
    );

    let mut bin = read(&dir.join("BoxMeshopt.bin"));
    bin[32] ^= 0xff; // the header byte of the normal stream (buffer view 1)
    let mut files = MemoryResources::default();
    files.insert("BoxMeshopt.bin", bin);
    let err = import_gltf_with_resources(
        &read(&dir.join("BoxMeshopt.gltf")),
        &files,
        &ImportLimits::default(),
    )
    .unwrap_err();
    assert!(chain(&err).contains("buffer view 1"), "{}", chain(&err));
}

#[test]
fn a_bundled_glb_imports_alone_as_the_files_did() {
    let path = water_bottle();
    let folder = DirResources::beside(&path).unwrap();
    let packed = pack_glb(&read(&path), &folder, &ImportLimits::default()).unwrap();
    assert_eq!(&packed[..4], b"glTF");
    let alone = import_gltf(&packed).unwrap();
    let with_files = import_file(&path).unwrap();
    assert_eq!(alone.textures, with_files.textures);
    assert_eq!(alone.meshes, with_files.meshes);
    assert_eq!(alone.materials, with_files.materials);

    // Compressed geometry is decoded into the bundle; quantized attributes keep their extension.
    let dir = assets().join("compressed");
    let packed = pack_glb(
        &read(&dir.join("BoxMeshopt.gltf")),
        &DirResources::new(&dir).unwrap(),
        &ImportLimits::default(),
    )
    .unwrap();
    let (json, _) = lightbox_testmodels::hostile::split_glb(&packed).unwrap();
    assert_eq!(json["extensionsRequired"], json!(["KHR_mesh_quantization"]));
    assert_eq!(json["buffers"].as_array().unwrap().len(), 1);
    let alone = import_gltf(&packed).unwrap();
    assert_eq!(
        world_triangles(&alone),
        world_triangles(&import_file(&dir.join("BoxMeshopt.gltf")).unwrap())
    );
}
