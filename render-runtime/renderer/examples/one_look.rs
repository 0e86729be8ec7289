//! Diagnostic for issue #17 Must-have 3: renders simple scenes with the native and the Cycles
//! engine (no denoising) into a folder for FLIP and side-by-side comparison.
//!
//!     one_look OUT_DIR SIZE SPP CYCLES_SPP [SCENE ...]
//!
//! Scenes: bearing, primitives, diffuse, rough_metal, smooth_metal, plastic, cube.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lightbox_testmodels as testmodels;
use render_runtime::scene::export::export_glb;
use render_runtime::scene::Material;
use render_runtime::{
    CyclesConfig, CyclesEngine, DenoiseRequest, Engine, Model, NativeEngine, NoHooks, RenderSpec,
};

fn scene(name: &str) -> Result<Vec<u8>> {
    let sphere = |base: [f32; 4], metallic: f32, roughness: f32| {
        export_glb(&testmodels::sphere_scene(
            0.5,
            48,
            Material {
                base_color: base,
                metallic,
                roughness,
                ..Material::default()
            },
        ))
    };
    Ok(match name {
        "bearing" => testmodels::bearing_glb(0.1),
        "primitives" => export_glb(&testmodels::primitives_scene()),
        "diffuse" => sphere([0.8, 0.8, 0.8, 1.0], 0.0, 1.0),
        "rough_metal" => sphere([0.9, 0.9, 0.9, 1.0], 1.0, 0.7),
        "smooth_metal" => sphere([0.9, 0.9, 0.9, 1.0], 1.0, 0.1),
        "plastic" => sphere([0.7, 0.08, 0.05, 1.0], 0.0, 0.3),
        "cube" => {
            let mut s = render_runtime::scene::Scene::default();
            s.add_material(Material {
                base_color: [0.8, 0.8, 0.8, 1.0],
                roughness: 1.0,
                ..Material::default()
            });
            let m = s.add_mesh(testmodels::cube_mesh(0.5));
            s.add_instance(m, render_runtime::scene::math::Affine::IDENTITY, None);
            export_glb(&s)
        }
        other => bail!("unknown scene {other}"),
    })
}

/// `ONE_LOOK_STUDIO`: `noground` drops the shadow catcher, `uniform` also sets a uniform
/// environment, `nolights` keeps only the environment (no ground).
fn studio() -> render_runtime::studio::Studio {
    let mut st = render_runtime::studio::Studio::default();
    let v = std::env::var("ONE_LOOK_STUDIO").unwrap_or_default();
    if v.contains("noground") {
        st.ground = None;
    }
    if v.contains("uniform") {
        st.environment = render_runtime::studio::Environment::Uniform {
            radiance: [0.5, 0.5, 0.5],
        };
    }
    if v.contains("opaque") {
        st.ground = Some(render_runtime::studio::ShadowCatcher { opacity: 1.0 });
    }
    if v.contains("nolights") {
        st.lights.clear();
    }
    st
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        bail!("usage: one_look OUT SIZE SPP CYCLES_SPP SCENE...");
    }
    let out = PathBuf::from(&args[1]);
    std::fs::create_dir_all(&out)?;
    let size: u32 = args[2].parse()?;
    let spp: u32 = args[3].parse()?;
    let cspp: u32 = args[4].parse()?;
    let spec = |samples| RenderSpec {
        width: size,
        height: size,
        samples: Some(samples),
        denoise: DenoiseRequest::Off,
        studio: studio(),
        ..RenderSpec::default()
    };
    let mut native = NativeEngine::new();
    let mut cycles = CyclesEngine::start(CyclesConfig {
        device: Some("CPU".into()),
        ..CyclesConfig::from_env()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    for name in &args[5..] {
        let glb = scene(name)?;
        let n = native
            .render_spec(Model::Bytes(&glb), &spec(spp), &NoHooks)
            .context("native")?;
        std::fs::write(out.join(format!("{name}-native.png")), &n.images[0].bytes)?;
        let c = cycles
            .render_spec(Model::Bytes(&glb), &spec(cspp), &NoHooks)
            .context("cycles")?;
        std::fs::write(out.join(format!("{name}-cycles.png")), &c.images[0].bytes)?;
        println!("{name}: done");
    }
    Ok(())
}
