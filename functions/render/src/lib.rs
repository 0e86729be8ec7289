//! The render function: one model in (GLB, USD master, or STEP through the tessellation cache),
//! one or more images out (stills, thumbnails, turntables), imported once per job.
//!
//! The pure core is [`render_model`] (bytes and specs in, encoded images out); the queue handler
//! [`RenderHandler`] adds input resolution, limits, progress, cancellation and uploads.
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
mod source;

pub use engines::{render_model, render_model_cycles, RenderFailure, Rendered};
pub use handler::RenderHandler;
pub use keys::{frame_key, output_key};
pub use limits::{default_memory_budget, parse_specs, RenderLimits};
pub use source::{ModelKind, SourcePath};

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_runtime::ObjectKey;
    use render_runtime::RenderSpec;

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
        assert!(light.check(0, &spec(1024, 1024)).is_ok());
        let err = light.check(0, &spec(2048, 2048)).unwrap_err();
        assert!(
            err.contains("limit of 1024 pixels per edge")
                && err.contains("LIGHTBOX_RENDER_MAX_EDGE"),
            "{err}"
        );
        let mut many = spec(64, 64);
        many.samples = Some(5000);
        assert!(light
            .check(1, &many)
            .unwrap_err()
            .contains("output 1: 5000 samples"));
        let mut turntable = spec(64, 64);
        turntable.turntable = Some(render_runtime::TurntableSpec::default());
        assert!(light
            .check(0, &turntable)
            .unwrap_err()
            .contains("turntables belong on render.heavy"));
        assert!(RenderLimits::for_queue("render.heavy")
            .check(0, &turntable)
            .is_ok());
    }

    #[test]
    fn output_keys_are_deterministic() {
        let a = output_key(b"model", &spec(64, 64), "native", None);
        assert_eq!(a, output_key(b"model", &spec(64, 64), "native", None));
        assert_ne!(a, output_key(b"model", &spec(65, 64), "native", None));
        assert_ne!(a, output_key(b"other", &spec(64, 64), "native", None));
        let given = ObjectKey::new("outputs/mine.png").unwrap();
        assert_eq!(
            output_key(b"model", &spec(64, 64), "native", Some(&given)),
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
}
