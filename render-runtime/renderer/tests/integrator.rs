//! Analytic checks of the integrator: furnace scenes whose exact answer is known.

use lightbox_testmodels as testmodels;
use render_runtime::scene::Material;
use render_runtime::spec::RenderSpec;
use render_runtime::studio::{Background, Environment, Studio};
use render_runtime::{NoHooks, PreparedScene};

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

#[test]
fn furnace_rough_white_metal_keeps_its_energy_with_compensation() {
    // Single-scattering GGX at roughness 1 returns only about 1 - ln 2 of the light at normal
    // incidence; the multiple-scattering compensation brings a white metal back to 1.
    for roughness in [0.5f32, 0.8, 1.0] {
        let metal = Material {
            base_color: [1.0; 4],
            metallic: 1.0,
            roughness,
            ..Material::default()
        };
        let mean = furnace_mean(metal, 64)[1];
        assert!(
            (0.97..=1.01).contains(&mean),
            "roughness {roughness}: white metal radiance {mean}, expected 1"
        );
    }
}

#[test]
fn furnace_layers_never_gain_energy() {
    use render_runtime::scene::{Clearcoat, Sheen, Transmission, Volume};
    let white = Material {
        base_color: [1.0; 4],
        metallic: 0.0,
        roughness: 0.5,
        ..Material::default()
    };
    let cases = [
        (
            "clearcoat over white",
            Material {
                clearcoat: Some(Clearcoat {
                    factor: 1.0,
                    roughness: 0.2,
                    ..Clearcoat::default()
                }),
                ..white.clone()
            },
            0.95,
        ),
        (
            "sheen over white",
            Material {
                sheen: Some(Sheen {
                    color: [1.0; 3],
                    roughness: 0.5,
                    ..Sheen::default()
                }),
                ..white.clone()
            },
            0.9,
        ),
        (
            "coloured specular",
            Material {
                specular_color: [3.0, 3.0, 3.0],
                ior: 1.8,
                ..white.clone()
            },
            0.95,
        ),
        (
            "thin clear glass",
            Material {
                roughness: 0.0,
                transmission: Some(Transmission {
                    factor: 1.0,
                    texture: None,
                }),
                ..white.clone()
            },
            0.97,
        ),
        (
            "solid clear glass",
            Material {
                roughness: 0.0,
                transmission: Some(Transmission {
                    factor: 1.0,
                    texture: None,
                }),
                volume: Some(Volume {
                    thickness: 2.0,
                    ..Volume::default()
                }),
                ..white.clone()
            },
            0.95,
        ),
        (
            "frosted solid glass",
            Material {
                roughness: 0.4,
                transmission: Some(Transmission {
                    factor: 1.0,
                    texture: None,
                }),
                volume: Some(Volume {
                    thickness: 2.0,
                    ..Volume::default()
                }),
                ..white.clone()
            },
            0.8,
        ),
    ];
    for (name, material, floor) in cases {
        let mean = furnace_mean(material, 64)[1];
        assert!(
            mean <= 1.01,
            "{name}: radiance {mean} exceeds the environment"
        );
        assert!(mean >= floor, "{name}: radiance {mean} below {floor}");
    }
}

#[test]
fn furnace_absorbing_glass_darkens_by_beer_lambert() {
    use render_runtime::scene::{Transmission, Volume};
    // Through the centre of a unit sphere light travels 2 units; attenuation colour 0.5 at
    // distance 2 halves it there, and the edges (shorter chords) keep more.
    let glass = |attenuation: [f32; 3]| Material {
        base_color: [1.0; 4],
        metallic: 0.0,
        roughness: 0.0,
        transmission: Some(Transmission {
            factor: 1.0,
            texture: None,
        }),
        volume: Some(Volume {
            thickness: 2.0,
            attenuation_color: attenuation,
            attenuation_distance: 2.0,
            ..Volume::default()
        }),
        ..Material::default()
    };
    let clear = furnace_mean(glass([1.0; 3]), 32);
    let tinted = furnace_mean(glass([0.5, 1.0, 1.0]), 32);
    assert!(
        (tinted[1] - clear[1]).abs() < 0.03,
        "green unchanged: {tinted:?} vs {clear:?}"
    );
    let ratio = tinted[0] / clear[0];
    assert!(
        (0.45..0.85).contains(&ratio),
        "red keeps {ratio} of its light through the sphere"
    );
}

/// A lit diffuse sphere (noisy: area lights, bounces) over an empty background (flat: every
/// camera ray there misses), no ground, rendered at `samples` with the given threshold.
fn adaptive_film(samples: u32, threshold: f32) -> render_runtime::Film {
    let prepared = PreparedScene::from_scene(testmodels::sphere_scene(
        1.0,
        32,
        Material::lambertian([0.6; 3]),
    ))
    .unwrap();
    let spec = RenderSpec {
        width: 48,
        height: 32,
        samples: Some(samples),
        seed: 5,
        adaptive_threshold: threshold,
        studio: Studio {
            ground: None,
            background: Background::Transparent,
            ..Studio::product()
        },
        ..RenderSpec::default()
    };
    let plan = spec.resolve().unwrap();
    prepared.render_film(&plan, 0, &NoHooks).unwrap().0
}

fn rmse(a: &render_runtime::Film, b: &render_runtime::Film) -> f64 {
    let sum: f64 = a
        .color
        .iter()
        .zip(&b.color)
        .flat_map(|(x, y)| (0..4).map(move |c| (x[c] - y[c]) as f64))
        .map(|d| d * d)
        .sum();
    (sum / (a.color.len() * 4) as f64).sqrt()
}

#[test]
fn adaptive_sampling_stops_flat_background_early_and_keeps_the_image() {
    let budget = 64;
    let full = adaptive_film(budget, 0.0);
    let adaptive = adaptive_film(budget, 0.02);
    // Off: every pixel gets the whole budget.
    assert!(full.samples.iter().all(|&n| n == budget));
    // The corner sees only background: it stops at the minimum (a quarter of the budget).
    let corner = adaptive.samples[0];
    assert_eq!(
        corner, 16,
        "background pixel took {corner} of {budget} samples"
    );
    // Every pixel whose 3x3 neighbourhood sees only background stops early (a neighbour of
    // the silhouette keeps sampling with it).
    let (w, h) = (48usize, 32usize);
    let empty = |x: usize, y: usize| adaptive.color[y * w + x][3] == 0.0;
    let background: Vec<u32> = (1..h - 1)
        .flat_map(|y| (1..w - 1).map(move |x| (x, y)))
        .filter(|&(x, y)| (y - 1..=y + 1).all(|ny| (x - 1..=x + 1).all(|nx| empty(nx, ny))))
        .map(|(x, y)| adaptive.samples[y * w + x])
        .collect();
    assert!(
        background.len() > 100,
        "{} background pixels",
        background.len()
    );
    assert!(
        background.iter().all(|&n| n < budget),
        "background spp {background:?}"
    );
    // The sphere's lit pixels are noisy and keep sampling to the budget.
    let centre = adaptive.samples[16 * 48 + 24];
    assert_eq!(centre, budget, "sphere centre stopped at {centre}");
    let mean = adaptive.mean_samples();
    assert!(mean < 0.8 * budget as f64, "mean spp {mean}");
    // The image is the non-adaptive one up to noise: the difference is far below the noise of
    // a 16-spp render against the full budget.
    let coarse = adaptive_film(16, 0.0);
    let (diff, noise) = (rmse(&adaptive, &full), rmse(&coarse, &full));
    println!("mean spp {mean:.1} of {budget}; RMSE adaptive vs full {diff:.5}, 16 spp vs full {noise:.5}");
    assert!(
        diff < 0.25 * noise,
        "adaptive vs full RMSE {diff:.5}, 16 spp vs full {noise:.5}"
    );
    // A looser threshold also stops lit sphere pixels early, and the image stays well within
    // the 16-spp noise of the full render.
    let loose = adaptive_film(budget, 0.1);
    let lit_early = loose
        .color
        .iter()
        .zip(&loose.samples)
        .filter(|(c, &n)| c[3] == 1.0 && n < budget)
        .count();
    assert!(lit_early > 20, "{lit_early} sphere pixels stopped early");
    let loose_diff = rmse(&loose, &full);
    println!(
        "threshold 0.1: mean spp {:.1}, RMSE vs full {loose_diff:.5}",
        loose.mean_samples()
    );
    assert!(
        loose_diff < 0.5 * noise,
        "threshold 0.1 vs full RMSE {loose_diff:.5}, 16 spp vs full {noise:.5}"
    );
    // Deterministic for a given seed.
    assert_eq!(adaptive, adaptive_film(budget, 0.02));
    assert_eq!(loose, adaptive_film(budget, 0.1));
}

/// Mean shadow-catcher coverage (alpha) over the ground pixels of a sphere resting on the
/// product studio's catcher, for a Lambertian sphere of `albedo`.
fn catcher_alphas(albedo: f32) -> Vec<f32> {
    let prepared = PreparedScene::from_scene(testmodels::sphere_scene(
        1.0,
        32,
        Material::lambertian([albedo; 3]),
    ))
    .unwrap();
    let spec = RenderSpec {
        width: 48,
        height: 48,
        samples: Some(64),
        seed: 3,
        studio: Studio {
            background: Background::Transparent,
            ..Studio::product()
        },
        ..RenderSpec::default()
    };
    let plan = spec.resolve().unwrap();
    let film = prepared.render_film(&plan, 0, &NoHooks).unwrap().0;
    film.color.iter().map(|c| c[3]).collect()
}

#[test]
fn shadow_catcher_receives_the_light_the_model_reflects_onto_it() {
    // Cycles' catcher (and a real floor) is lit by what the model bounces onto it: next to a
    // white sphere the shadow is lighter than next to a black one of the same shape, whose
    // shadow is occlusion only.
    let black = catcher_alphas(0.0);
    let white = catcher_alphas(0.9);
    // Ground pixels: some shadow, none of the sphere.
    let ground: Vec<usize> = (0..black.len())
        .filter(|&i| black[i] > 0.02 && black[i] < 0.5)
        .collect();
    assert!(ground.len() > 50, "{} shadowed ground pixels", ground.len());
    let mean = |a: &[f32]| ground.iter().map(|&i| a[i] as f64).sum::<f64>() / ground.len() as f64;
    let (b, w) = (mean(&black), mean(&white));
    assert!(
        w < b * 0.85,
        "shadow next to a white sphere {w:.4}, next to a black one {b:.4}"
    );
}
