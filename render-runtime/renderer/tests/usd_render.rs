//! A USD master renders like the GLB it came from.

use lightbox_testmodels as testmodels;
use render_runtime::scene::usd_write::{export_usda, export_usdz};
use render_runtime::spec::RenderSpec;
use render_runtime::{Film, ImportLimits, NoHooks, PreparedScene};

fn render(prepared: &PreparedScene) -> Film {
    let spec = RenderSpec {
        width: 48,
        height: 48,
        samples: Some(8),
        ..RenderSpec::default()
    };
    let plan = spec.resolve().unwrap();
    prepared.render_film(&plan, 0, &NoHooks).unwrap().0
}

/// Mean absolute colour difference relative to the mean colour.
fn relative_difference(a: &Film, b: &Film) -> f64 {
    let mut diff = 0.0f64;
    let mut total = 0.0f64;
    for (pa, pb) in a.color.iter().zip(&b.color) {
        for c in 0..3 {
            diff += (pa[c] - pb[c]).abs() as f64;
            total += pa[c].abs() as f64;
        }
    }
    diff / total.max(1e-12)
}

#[test]
fn usd_bearing_renders_like_the_glb_bearing() {
    let glb = testmodels::bearing_glb(0.05);
    let limits = ImportLimits::default();
    let from_glb = PreparedScene::from_model(&glb, &limits).unwrap();
    let reference = render(&from_glb);
    assert!(
        reference.mean_covered_radiance().is_some(),
        "the bearing is in view"
    );
    let scene = from_glb.scene().clone();
    for (name, bytes) in [
        ("usda", export_usda(&scene).into_bytes()),
        ("usdz", export_usdz(&scene)),
    ] {
        let from_usd = PreparedScene::from_model(&bytes, &limits).unwrap();
        assert_eq!(
            from_usd.scene().instanced_triangle_count(),
            scene.instanced_triangle_count(),
            "{name}"
        );
        let image = render(&from_usd);
        let d = relative_difference(&reference, &image);
        assert!(d < 0.01, "{name}: image differs by {:.3} %", d * 100.0);
    }
}
