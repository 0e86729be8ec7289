//! The whole pipeline: determinism, turntables, hooks, and tiny golden images.
//!
//! Goldens live in `tests/golden/`. When a comparison fails, `NAME-actual.png` and
//! `NAME-diff.png` are written next to the golden. To regenerate after an intended change, run
//! with `LIGHTBOX_UPDATE_GOLDENS=1` and review the new images before committing them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lightbox_testmodels as testmodels;
use render_runtime::scene::export::export_glb;
use render_runtime::spec::{ImageFormat, RenderSpec, TurntableSpec};
use render_runtime::studio::{Background, Studio};
use render_runtime::{
    render_glb, DenoiseRequest, Denoiser, NoHooks, PreparedScene, RenderError, RenderHooks,
};

fn tiny_spec(samples: u32) -> RenderSpec {
    RenderSpec {
        width: 32,
        height: 32,
        samples: Some(samples),
        ..RenderSpec::default()
    }
}

#[test]
fn same_seed_renders_identical_bytes() {
    let glb = testmodels::bearing_glb(0.03);
    let spec = tiny_spec(4);
    let a = render_glb(&glb, &spec, &NoHooks).unwrap();
    let b = render_glb(&glb, &spec, &NoHooks).unwrap();
    assert_eq!(a.images[0].bytes, b.images[0].bytes);
    // A single-threaded pool schedules strips differently and must still agree.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = pool.install(|| render_glb(&glb, &spec, &NoHooks).unwrap());
    assert_eq!(a.images[0].bytes, c.images[0].bytes);
    let other_seed = RenderSpec { seed: 99, ..spec };
    let d = render_glb(&glb, &other_seed, &NoHooks).unwrap();
    assert_ne!(a.images[0].bytes, d.images[0].bytes);
}

#[test]
fn output_reports_policy_samples_denoiser_and_timings() {
    let glb = testmodels::bearing_glb(0.03);
    let spec = RenderSpec {
        width: 64,
        height: 48,
        samples: None,
        denoise: DenoiseRequest::Builtin,
        format: ImageFormat::Webp {
            quality: 80.0,
            lossless: false,
        },
        ..RenderSpec::default()
    };
    let out = render_glb(&glb, &spec, &NoHooks).unwrap();
    assert_eq!(out.samples, 32, "policy minimum");
    assert_eq!(out.denoiser, Denoiser::Builtin);
    assert_eq!(&out.images[0].bytes[8..12], b"WEBP");
    assert!(out.rays > 64 * 48 * 32, "at least one ray per sample");
    assert!(out.mrays_per_s > 0.0);
    assert!(!out.timings.render.is_zero() && !out.timings.accel_build.is_zero());
}

#[test]
fn turntable_reuses_the_scene_and_writes_an_animation() {
    let prepared = PreparedScene::from_scene(testmodels::bearing_scene(0.03)).unwrap();
    let spec = RenderSpec {
        turntable: Some(TurntableSpec {
            frames: 3,
            ..TurntableSpec::default()
        }),
        ..tiny_spec(2)
    };
    let out = prepared.render(&spec, &NoHooks).unwrap();
    assert_eq!(out.images.len(), 3);
    assert_eq!(
        out.images.iter().map(|i| i.frame).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    assert_ne!(
        out.images[0].bytes, out.images[1].bytes,
        "the camera must move between frames"
    );
    let anim = out.animation.expect("animated webp");
    assert!(anim.bytes.windows(4).any(|w| w == b"ANIM"));
    // Timings report the one build, not one per frame.
    assert_eq!(out.timings.accel_build, prepared.accel_build_time());
}

struct CountingHooks {
    last_done: AtomicU64,
    last_total: AtomicU64,
    calls: AtomicU64,
}

impl RenderHooks for CountingHooks {
    fn progress(&self, done: u64, total: u64) {
        assert!(
            done >= self.last_done.load(Ordering::Relaxed),
            "progress went backwards"
        );
        self.last_done.store(done, Ordering::Relaxed);
        self.last_total.store(total, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn progress_reaches_total_and_cancellation_stops() {
    let prepared = PreparedScene::from_scene(testmodels::bearing_scene(0.03)).unwrap();
    let hooks = CountingHooks {
        last_done: AtomicU64::new(0),
        last_total: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    };
    let spec = RenderSpec {
        turntable: Some(TurntableSpec {
            frames: 2,
            ..TurntableSpec::default()
        }),
        ..tiny_spec(8)
    };
    prepared.render(&spec, &hooks).unwrap();
    assert_eq!(hooks.last_total.load(Ordering::Relaxed), 16);
    assert_eq!(hooks.last_done.load(Ordering::Relaxed), 16);
    assert!(hooks.calls.load(Ordering::Relaxed) >= 2);

    let cancelled = AtomicBool::new(true);
    let err = prepared.render(&tiny_spec(8), &cancelled).unwrap_err();
    assert!(matches!(err, RenderError::Cancelled), "{err:?}");
}

#[test]
fn invalid_spec_fails_before_import() {
    let spec = RenderSpec {
        width: 0,
        ..RenderSpec::default()
    };
    let err = render_glb(b"garbage", &spec, &NoHooks).unwrap_err();
    assert!(matches!(err, RenderError::Spec(_)), "{err:?}");
}

// ---- golden images ----

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn decode_rgba8(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Mean absolute error over RGBA in display space (sRGB, 0..1), and the worst 4x4 block mean.
/// Display space is roughly perceptually uniform, and the block measure catches a localised
/// artefact that a global mean would average away.
fn compare(w: u32, h: u32, a: &[u8], b: &[u8]) -> (f64, f64) {
    let err = |i: usize| (a[i] as f64 - b[i] as f64).abs() / 255.0;
    let total: f64 = (0..a.len()).map(err).sum::<f64>() / a.len() as f64;
    let mut worst: f64 = 0.0;
    for by in (0..h).step_by(4) {
        for bx in (0..w).step_by(4) {
            let mut sum = 0.0;
            let mut n = 0.0;
            for y in by..(by + 4).min(h) {
                for x in bx..(bx + 4).min(w) {
                    let p = ((y * w + x) * 4) as usize;
                    for c in 0..4 {
                        sum += err(p + c);
                        n += 1.0;
                    }
                }
            }
            worst = worst.max(sum / n);
        }
    }
    (total, worst)
}

fn write_png(path: &PathBuf, w: u32, h: u32, rgba: &[u8]) {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(rgba)
            .unwrap();
    }
    std::fs::write(path, out).unwrap();
}

fn check_golden(name: &str, png_bytes: &[u8]) {
    let path = golden_dir().join(format!("{name}.png"));
    if std::env::var_os("LIGHTBOX_UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, png_bytes).unwrap();
        return;
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "missing golden {} ({e}); run with LIGHTBOX_UPDATE_GOLDENS=1",
            path.display()
        )
    });
    let (gw, gh, expected) = decode_rgba8(&golden);
    let (w, h, actual) = decode_rgba8(png_bytes);
    assert_eq!((gw, gh), (w, h), "{name}: size changed");
    let (mean, worst_block) = compare(w, h, &expected, &actual);
    if mean > 0.01 || worst_block > 0.06 {
        let diff: Vec<u8> = expected
            .chunks_exact(4)
            .zip(actual.chunks_exact(4))
            .flat_map(|(e, a)| {
                let d = (0..4)
                    .map(|c| (e[c] as i32 - a[c] as i32).unsigned_abs())
                    .max()
                    .unwrap();
                let v = (d * 4).min(255) as u8;
                [v, v, v, 255]
            })
            .collect();
        write_png(
            &golden_dir().join(format!("{name}-actual.png")),
            w,
            h,
            &actual,
        );
        write_png(&golden_dir().join(format!("{name}-diff.png")), w, h, &diff);
        panic!("{name}: mean error {mean:.4}, worst 4x4 block {worst_block:.4} (wrote -actual and -diff PNGs)");
    }
}

#[test]
fn golden_primitives_product_studio() {
    let glb = export_glb(&testmodels::primitives_scene());
    let out = render_glb(&glb, &tiny_spec(32), &NoHooks).unwrap();
    check_golden("primitives-product", &out.images[0].bytes);
}

#[test]
fn golden_bearing_transparent() {
    let glb = testmodels::bearing_glb(0.05);
    let spec = RenderSpec {
        studio: Studio {
            background: Background::Transparent,
            ..Studio::product()
        },
        ..tiny_spec(32)
    };
    let out = render_glb(&glb, &spec, &NoHooks).unwrap();
    check_golden("bearing-transparent", &out.images[0].bytes);
}

#[test]
fn golden_sphere_linear_no_denoise() {
    let scene = testmodels::sphere_scene(
        0.5,
        16,
        render_runtime::scene::Material {
            base_color: [0.2, 0.4, 0.8, 1.0],
            metallic: 0.0,
            roughness: 0.4,
            ..Default::default()
        },
    );
    let prepared = PreparedScene::from_scene(scene).unwrap();
    let spec = RenderSpec {
        denoise: DenoiseRequest::Off,
        tone: render_runtime::ToneMap::Linear,
        ..tiny_spec(64)
    };
    let out = prepared.render(&spec, &NoHooks).unwrap();
    check_golden("sphere-linear", &out.images[0].bytes);
}

/// OIDN is the default denoiser (its library from `tools/setup.sh`, loaded at run time with no
/// `LD_LIBRARY_PATH`), and it brings a few-sample image closer to the converged one; the
/// built-in filter is not what `auto` falls back to.
#[test]
fn auto_denoises_with_oidn_and_brings_the_image_closer_to_converged() {
    use testmodels::compare::LumaImage;
    assert!(
        render_runtime::spec::native_has_oidn(),
        "OIDN not loadable (run tools/setup.sh): {:?}",
        render_runtime::denoise::oidn::status()
    );
    let glb = testmodels::bearing_glb(0.03);
    let spec = |samples: u32, denoise: DenoiseRequest| RenderSpec {
        width: 96,
        height: 96,
        samples: Some(samples),
        denoise,
        ..RenderSpec::default()
    };
    let render = |s: &RenderSpec| render_glb(&glb, s, &NoHooks).unwrap();
    let auto = render(&spec(8, DenoiseRequest::Auto));
    assert_eq!(auto.denoiser, Denoiser::Oidn);
    let off = render(&spec(8, DenoiseRequest::Off));
    let converged = render(&spec(512, DenoiseRequest::Off));
    let luma = |o: &render_runtime::RenderOutput| LumaImage::from_png(&o.images[0].bytes).unwrap();
    let reference = luma(&converged);
    let (e_oidn, e_off) = (
        luma(&auto).rmse(&reference).unwrap(),
        luma(&off).rmse(&reference).unwrap(),
    );
    assert!(
        e_oidn < e_off * 0.7,
        "RMSE oidn {e_oidn} vs undenoised {e_off}"
    );
    // No silhouette washed out: the model keeps its dark detail after denoising.
    let min = luma(&auto).values.iter().copied().fold(f32::MAX, f32::min);
    assert!(min < 0.5, "darkest pixel {min}");
}
