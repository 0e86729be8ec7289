//! Renders the material cases to PNGs for looking at: the real glTF assets (DamagedHelmet,
//! WaterBottle) with and without emission, and a row of spheres per layer (rough metal,
//! clearcoat, sheen, specular colour, thin and solid glass).
//!
//! `cargo run --release -p render-runtime --example material_gallery -- [OUT_DIR] [SIZE] [SPP]`
//! (default `/tmp/lightbox-materials`, 384 px, 64 samples).

use std::path::{Path, PathBuf};

use render_runtime::math::{Affine, Vec3};
use render_runtime::scene::{
    import_gltf_with_resources, Clearcoat, DirResources, ImportLimits, Material, Sheen,
    Transmission, Volume,
};
use render_runtime::spec::RenderSpec;
use render_runtime::studio::{CameraRig, Studio};
use render_runtime::{NoHooks, PreparedScene, Scene};

fn save(prepared: &PreparedScene, studio: &Studio, size: u32, spp: u32, path: &Path) {
    let spec = RenderSpec {
        width: size,
        height: size,
        samples: Some(spp),
        studio: studio.clone(),
        ..RenderSpec::default()
    };
    let t = std::time::Instant::now();
    let out = prepared.render(&spec, &NoHooks).expect("render");
    std::fs::write(path, &out.images[0].bytes).expect("write png");
    println!("{} ({:.1} s)", path.display(), t.elapsed().as_secs_f64());
}

fn spheres(materials: Vec<Material>) -> Scene {
    let mut scene = Scene::default();
    let n = materials.len();
    for (i, material) in materials.into_iter().enumerate() {
        let m = scene.add_material(material);
        let mut mesh = lightbox_testmodels::sphere_mesh(0.45, 48, 96);
        mesh.triangle_materials = vec![m; mesh.triangles.len()];
        let mesh = scene.add_mesh(mesh);
        let x = i as f32 - (n as f32 - 1.0) * 0.5;
        scene.add_instance(mesh, Affine::translation(Vec3::new(x, 0.0, 0.0)), None);
    }
    scene
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or("/tmp/lightbox-materials".into()),
    );
    let size: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(384);
    let spp: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    std::fs::create_dir_all(&out).expect("output folder");
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets/gltf");
    let front = Studio {
        camera: CameraRig {
            yaw_deg: 0.0,
            pitch_deg: 5.0,
            ..CameraRig::default()
        },
        ..Studio::product()
    };

    for (name, file) in [
        ("damaged_helmet", "DamagedHelmet/DamagedHelmet.glb"),
        ("water_bottle", "WaterBottle/PF_WaterBottle_MR.gltf"),
    ] {
        let path = assets.join(file);
        let bytes = std::fs::read(&path).expect("asset");
        let resources = DirResources::beside(&path).expect("asset folder");
        let scene = import_gltf_with_resources(&bytes, &resources, &ImportLimits::default())
            .expect("import");
        let mut dark = scene.clone();
        for m in &mut dark.materials {
            m.emissive = [0.0; 3];
        }
        let prepared = PreparedScene::from_scene(scene).expect("accel");
        save(
            &prepared,
            &front,
            size,
            spp,
            &out.join(format!("{name}.png")),
        );
        save(
            &prepared,
            &Studio::product(),
            size,
            spp,
            &out.join(format!("{name}_3q.png")),
        );
        let prepared = PreparedScene::from_scene(dark).expect("accel");
        save(
            &prepared,
            &front,
            size,
            spp,
            &out.join(format!("{name}_no_emission.png")),
        );
    }

    let gold = [1.0, 0.78, 0.34, 1.0];
    let rows: Vec<(&str, Vec<Material>)> = vec![
        (
            "metal_roughness",
            [0.0f32, 0.25, 0.5, 0.75, 1.0]
                .map(|r| Material {
                    base_color: gold,
                    metallic: 1.0,
                    roughness: r,
                    ..Material::default()
                })
                .to_vec(),
        ),
        (
            "layers",
            vec![
                // Red plastic with a clear coat.
                Material {
                    base_color: [0.6, 0.02, 0.02, 1.0],
                    metallic: 0.0,
                    roughness: 0.6,
                    clearcoat: Some(Clearcoat {
                        factor: 1.0,
                        roughness: 0.05,
                        ..Clearcoat::default()
                    }),
                    ..Material::default()
                },
                // Dark blue velvet (sheen).
                Material {
                    base_color: [0.02, 0.02, 0.1, 1.0],
                    metallic: 0.0,
                    roughness: 0.9,
                    sheen: Some(Sheen {
                        color: [0.4, 0.5, 1.0],
                        roughness: 0.4,
                        ..Sheen::default()
                    }),
                    ..Material::default()
                },
                // White with a coloured specular (KHR_materials_specular).
                Material {
                    base_color: [0.05, 0.05, 0.05, 1.0],
                    metallic: 0.0,
                    roughness: 0.3,
                    specular_color: [4.0, 2.0, 0.5],
                    ..Material::default()
                },
                // Thin-walled clear glass.
                Material {
                    base_color: [1.0; 4],
                    metallic: 0.0,
                    roughness: 0.0,
                    transmission: Some(Transmission {
                        factor: 1.0,
                        texture: None,
                    }),
                    ..Material::default()
                },
                // Solid green glass (volume with absorption).
                Material {
                    base_color: [1.0; 4],
                    metallic: 0.0,
                    roughness: 0.0,
                    transmission: Some(Transmission {
                        factor: 1.0,
                        texture: None,
                    }),
                    volume: Some(Volume {
                        thickness: 0.9,
                        attenuation_color: [0.3, 0.9, 0.4],
                        attenuation_distance: 0.5,
                        ..Volume::default()
                    }),
                    ..Material::default()
                },
                // Frosted glass.
                Material {
                    base_color: [1.0; 4],
                    metallic: 0.0,
                    roughness: 0.4,
                    transmission: Some(Transmission {
                        factor: 1.0,
                        texture: None,
                    }),
                    volume: Some(Volume {
                        thickness: 0.9,
                        ..Volume::default()
                    }),
                    ..Material::default()
                },
            ],
        ),
    ];
    for (name, materials) in rows {
        let prepared = PreparedScene::from_scene(spheres(materials)).expect("accel");
        save(
            &prepared,
            &front,
            size * 2,
            spp,
            &out.join(format!("{name}.png")),
        );
    }
}
