//! The render function: one model in (GLB, USD master, or STEP through the tessellation cache),
//! one or more images out (stills, thumbnails, turntables), imported once per job.
//!
//! Every render goes one way: each output's spec is resolved once into a `RenderPlan` for the
//! job's engine and checked against the queue's limits ([`plan_outputs`]), and the plans are
//! rendered through the `Engine` trait ([`render_with`]) by an engine the [`EnginePool`] keeps
//! warm. The pure core is [`render_model`] (bytes and specs in, encoded images out, native
//! engine); the queue handler [`RenderHandler`] adds input resolution, progress, cancellation
//! and uploads. `lightbox render` uses the same [`ModelKind`] rule and [`render_with`].
//!
//! Modules: `limits` (queue limits, memory budget, output plans), `model` (the model-kind rule),
//! `source` (input resolution and tessellation requests), `gltf_files` (a `.gltf`'s files
//! fetched from beside it and bundled into one GLB), `engines` (the pool, the render path,
//! retry classes), `keys` (output keys), `handler` (the queue handler).
//!
//! ```no_run
//! use lightbox_render::{render_model, ModelKind, RenderLimits};
//! use render_runtime::{NoHooks, RenderSpec};
//!
//! let glb = lightbox_testmodels::bearing_glb(0.05);
//! let spec = RenderSpec { width: 64, height: 64, samples: Some(4), ..RenderSpec::default() };
//! let rendered = render_model(&glb, ModelKind::Glb, &[spec], &RenderLimits::default(), &NoHooks).unwrap();
//! assert_eq!(rendered.outputs.len(), 1);
//! ```

mod engines;
mod gltf_files;
mod handler;
mod keys;
mod limits;
mod model;
mod source;

pub use engines::{render_model, render_with, EnginePool, RenderFailure, Rendered};
pub use handler::RenderHandler;
pub use keys::{frame_key, output_key};
pub use limits::{default_memory_budget, parse_specs, plan_outputs, PlannedOutput, RenderLimits};
pub use model::{ModelKind, UnsupportedModel};
pub use source::SourcePath;

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_runtime::ObjectKey;
    use render_runtime::{EngineKind, RenderSpec};

    fn spec(width: u32, height: u32) -> RenderSpec {
        RenderSpec {
            width,
            height,
            ..RenderSpec::default()
        }
    }

    #[test]
    fn queue_limits_name_the_limit() {
        let light = RenderLimits::for_queue("render.light");
        let native = EngineKind::Native;
        assert!(light.plan(0, &spec(1024, 1024), native).is_ok());
        let err = light.plan(0, &spec(2048, 2048), native).unwrap_err();
        assert!(
            err.contains("limit of 1024 pixels per edge")
                && err.contains("LIGHTBOX_RENDER_MAX_EDGE"),
            "{err}"
        );
        let mut many = spec(64, 64);
        many.samples = Some(5000);
        assert!(light
            .plan(1, &many, native)
            .unwrap_err()
            .contains("output 1: 5000 samples"));
        let mut turntable = spec(64, 64);
        turntable.turntable = Some(render_runtime::TurntableSpec::default());
        assert!(light
            .plan(0, &turntable, native)
            .unwrap_err()
            .contains("turntables belong on render.heavy"));
        assert!(RenderLimits::for_queue("render.heavy")
            .plan(0, &turntable, native)
            .is_ok());
    }

    #[test]
    fn output_keys_are_deterministic() {
        let native = EngineKind::Native;
        let a = output_key(b"model", &spec(64, 64), native, None);
        assert_eq!(a, output_key(b"model", &spec(64, 64), native, None));
        assert_ne!(a, output_key(b"model", &spec(65, 64), native, None));
        assert_ne!(a, output_key(b"other", &spec(64, 64), native, None));
        assert_ne!(
            a,
            output_key(b"model", &spec(64, 64), EngineKind::Cycles, None)
        );
        let given = ObjectKey::new("outputs/mine.png").unwrap();
        assert_eq!(
            output_key(b"model", &spec(64, 64), native, Some(&given)),
            given
        );
        assert_eq!(
            frame_key(&ObjectKey::new("outputs/t.webp").unwrap(), 0, "png").as_str(),
            "outputs/t/frame-0001.png"
        );
    }

    #[test]
    fn model_kinds_come_from_extensions() {
        let kind = |k: &str| ModelKind::of(&ObjectKey::new(k).unwrap());
        assert_eq!(kind("models/a.GLB"), Some(ModelKind::Glb));
        assert_eq!(kind("models/a.usdz"), Some(ModelKind::Usd));
        assert_eq!(kind("models/a.stp"), Some(ModelKind::Step));
        assert_eq!(kind("models/a.obj"), None);
        assert_eq!(
            ModelKind::of_path(std::path::Path::new("a/b.USDA")),
            Ok(ModelKind::Usd)
        );
        let err = ModelKind::of_path(std::path::Path::new("part.obj")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model part.obj is not a .glb, .usd(a/c/z) or .step/.stp file; supported formats: \
             GLB/glTF (.glb, .gltf), USD (.usd, .usda, .usdc, .usdz), STEP (.step, .stp)"
        );
    }

    #[test]
    fn renders_a_small_bearing_and_refuses_broken_models() {
        let glb = lightbox_testmodels::bearing_glb(0.05);
        let mut small = spec(32, 32);
        small.samples = Some(2);
        let rendered = render_model(
            &glb,
            ModelKind::Glb,
            &[small.clone(), small.clone()],
            &RenderLimits::default(),
            &render_runtime::NoHooks,
        )
        .unwrap();
        assert_eq!(rendered.outputs.len(), 2);
        let truncated = &glb[..glb.len() / 2];
        let err = render_model(
            truncated,
            ModelKind::Glb,
            &[small],
            &RenderLimits::default(),
            &render_runtime::NoHooks,
        )
        .err()
        .unwrap();
        assert!(matches!(err, RenderFailure::Invalid(_)), "{err}");
    }

    #[test]
    fn a_model_over_the_memory_budget_fails_naming_the_setting() {
        let glb = lightbox_testmodels::hostile::cube_claiming_triangles(2_000_000);
        let mut limits = RenderLimits::default();
        limits.import.memory_budget = 64 << 20;
        let err = render_model(
            &glb,
            ModelKind::Glb,
            &[spec(32, 32)],
            &limits,
            &render_runtime::NoHooks,
        )
        .err()
        .unwrap();
        let RenderFailure::Invalid(message) = err else {
            panic!("{err}")
        };
        assert!(
            message.contains("over the memory budget of 64 MiB (LIGHTBOX_RENDER_MEMORY_MB)"),
            "{message}"
        );
        assert!(default_memory_budget() >= 64 << 20);
    }

    #[test]
    fn a_usd_model_over_the_memory_budget_fails_naming_the_setting() {
        let usda = render_runtime::export_usda(&lightbox_testmodels::primitives_scene());
        let mut limits = RenderLimits::default();
        limits.import.memory_budget = 4 << 10;
        let err = render_model(
            usda.as_bytes(),
            ModelKind::Usd,
            &[spec(32, 32)],
            &limits,
            &render_runtime::NoHooks,
        )
        .err()
        .unwrap();
        let RenderFailure::Invalid(message) = err else {
            panic!("{err}")
        };
        assert!(
            message.starts_with("usd import failed: ")
                && message.ends_with("over the memory budget of 1 MiB (LIGHTBOX_RENDER_MEMORY_MB)"),
            "{message}"
        );
    }

    #[test]
    fn the_name_picks_the_reader() {
        let glb = lightbox_testmodels::bearing_glb(0.05);
        let usda = render_runtime::export_usda(&lightbox_testmodels::primitives_scene());
        let mut small = spec(16, 16);
        small.samples = Some(1);
        let render = |bytes: &[u8], kind| {
            render_model(
                bytes,
                kind,
                std::slice::from_ref(&small),
                &RenderLimits::default(),
                &render_runtime::NoHooks,
            )
        };
        let message = |result: Result<Rendered, RenderFailure>| match result {
            Err(RenderFailure::Invalid(message)) => message,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("rendered"),
        };
        assert!(render(&glb, ModelKind::Glb).is_ok());
        assert!(render(usda.as_bytes(), ModelKind::Usd).is_ok());
        assert_eq!(
            message(render(&glb, ModelKind::Usd)),
            "usd import failed: not a usd file: expected '#usda', 'PXR-USDC' or a zip package at the start"
        );
        assert!(message(render(usda.as_bytes(), ModelKind::Glb))
            .starts_with("import failed: invalid gltf document"),);
        assert!(message(render(&glb, ModelKind::Step)).contains("must be tessellated"));
    }

    #[test]
    fn the_pool_keeps_one_warm_native_engine() {
        let glb = lightbox_testmodels::bearing_glb(0.05);
        let pool = EnginePool::new(RenderLimits::default().import);
        let mut small = spec(16, 16);
        small.samples = Some(1);
        let plans = [small.resolve().unwrap()];
        let render = || {
            pool.render(
                EngineKind::Native,
                &glb,
                ModelKind::Glb,
                &plans,
                &render_runtime::NoHooks,
            )
            .unwrap()
        };
        let cold = render();
        assert!(cold.import > std::time::Duration::ZERO);
        // The same model again: the warm engine still holds its scene.
        let warm = render();
        assert_eq!(warm.import, std::time::Duration::ZERO);
        assert_eq!(warm.accel_build, std::time::Duration::ZERO);
        assert_eq!(warm.outputs[0].images, cold.outputs[0].images);
        // Two jobs at once: the second gets a cold engine instead of waiting.
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(render);
            let b = scope.spawn(render);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(a.outputs[0].images, b.outputs[0].images);
    }

    #[test]
    fn outputs_are_planned_once_for_the_engine() {
        let request = |spec: serde_json::Value| lightbox_runtime::requests::RenderOutputRequest {
            output: None,
            spec: spec.as_object().unwrap().clone(),
        };
        let limits = RenderLimits::for_queue("render.light");
        let planned = plan_outputs(
            &[request(serde_json::json!({"width": 64, "height": 32}))],
            EngineKind::Native,
            &limits,
        )
        .unwrap();
        assert_eq!(planned[0].plan.samples, 32);
        assert_eq!((planned[0].plan.width, planned[0].plan.height), (64, 32));
        let oidn = [request(
            serde_json::json!({"width": 8, "height": 8, "denoise": "oidn"}),
        )];
        let cycles = plan_outputs(&oidn, EngineKind::Cycles, &limits).unwrap();
        assert_eq!(cycles[0].plan.denoiser, render_runtime::Denoiser::Oidn);
        assert_eq!(
            plan_outputs(&oidn, EngineKind::Native, &limits).is_ok(),
            render_runtime::spec::native_has_oidn()
        );
    }
}
