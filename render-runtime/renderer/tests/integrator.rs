//! Analytic checks of the integrator: furnace scenes whose exact answer is known.

use render_runtime::scene::Material;
use render_runtime::spec::RenderSpec;
use render_runtime::studio::{Background, Environment, Studio};
use render_runtime::{NoHooks, PreparedScene};
use lightbox_testmodels as testmodels;

/// A studio with nothing but a uniform environment of radiance 1.
fn furnace_studio() -> Studio {
    Studio {
        lights: Vec::new(),
        environment: Environment::Uniform { radiance: [1.0; 3] },
        ground: None,
        background: Background::Transparent,
        ..Studio::product()
    }
}

fn furnace_mean(material: Material, samples: u32) -> [f64; 3] {
    let prepared = PreparedScene::from_scene(testmodels::sphere_scene(1.0, 32, material)).unwrap();
    let spec = RenderSpec {
        width: 32,
        height: 32,
        samples: Some(samples),
        max_bounces: 16,
        studio: furnace_studio(),
        ..RenderSpec::default()
    };
    let plan = spec.resolve().unwrap();
    let (film, _) = prepared.render_film(&plan, 0, &NoHooks).unwrap();
    film.mean_covered_radiance().expect("sphere covers pixels")
}

#[test]
fn white_furnace_diffuse_sphere_shows_its_albedo() {
    for albedo in [0.18f32, 0.5, 0.8, 1.0] {
        let mean = furnace_mean(Material::lambertian([albedo; 3]), 16);
        for (channel, value) in mean.iter().enumerate() {
            let err = (value - albedo as f64).abs() / albedo as f64;
            assert!(
                err < 0.01,
                "albedo {albedo}: channel {channel} radiance {value} (error {:.2} %)",
                err * 100.0
            );
        }
    }
}

#[test]
fn furnace_metal_sphere_never_gains_energy() {
    for roughness in [0.1f32, 0.5, 1.0] {
        let metal = Material {
            base_color: [1.0; 4],
            metallic: 1.0,
            roughness,
            ..Material::default()
        };
        let mean = furnace_mean(metal, 64)[1];
        assert!(
            mean <= 1.01,
            "roughness {roughness}: radiance {mean} exceeds the environment"
        );
        if roughness <= 0.1 {
            assert!(
                mean >= 0.95,
                "smooth white metal should reflect nearly everything, got {mean}"
            );
        }
        assert!(
            mean >= 0.3,
            "roughness {roughness}: radiance {mean} implausibly low"
        );
    }
}

#[test]
fn furnace_coated_diffuse_stays_bounded() {
    let plastic = Material {
        base_color: [1.0; 4],
        metallic: 0.0,
        roughness: 0.3,
        ..Material::default()
    };
    let mean = furnace_mean(plastic, 64)[1];
    assert!(
        (0.85..=1.02).contains(&mean),
        "white coated diffuse radiance {mean}"
    );
}
