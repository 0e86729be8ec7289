//! The real-world asset benchmark of issue #15 (prints tables; not a timed test).
//!
//! For every asset of `../shared/assets/` (its README lists them), loaded the way `lightbox
//! render` loads a file (a `.gltf`'s buffers and images and a USD stage's layers and textures
//! collected from its folder), this prints: the time to collect its files and to import it
//! (median of `--reps`), the native engine's render time (path tracing plus denoise) at
//! `--size`² and `--samples` spp (512², 64 spp by default), and native against Blender Cycles
//! (the Cycles engine, Blender's own glTF and USD importers, the same studio) on the same bytes
//! at `--compare-size`² and `--compare-samples` spp (256², 32 spp by default: Cycles on a few
//! CPU cores takes minutes per asset at 512², 64 spp): Cycles' import and render time, SSIM over
//! the object (luma, cropped to the box either render covers) and mean FLIP (NVIDIA's
//! `flip-evaluator` through `bench/flip.py`, whole image, Cycles as the reference). Every image
//! is written to `--out`.
//!
//! Then the multi-file USD stages: our collect + import next to usd-core opening and traversing
//! the same stage in the same run (median of `--reps`; usd-core decodes no textures, we do).
//!
//! ```text
//! cargo run --release -p render-runtime --example bench_assets -- [--size 512] [--samples 64] \
//!     [--compare-size 256] [--compare-samples 32] [--engines native,cycles] [--only NAME] \
//!     [--reps 3] [--out DIR] [--assets ../shared/assets] [--python .tools/venv/bin/python]
//! ```
//!
//! Cycles runs on Blender's Python (`LIGHTBOX_BLENDER_PYTHON`, else `.tools/bpy/bin/python`;
//! `tools/setup-bpy.sh` installs it with `flip-evaluator`); usd-core comes from the tools venv
//! (`LIGHTBOX_TOOLS_PYTHON` overrides it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lightbox_testmodels::compare::LumaImage;
use render_runtime::scene::gltf_decode::{external_files, pack_glb};
use render_runtime::scene::usd_files::read_usd_model;
use render_runtime::scene::DirResources;
use render_runtime::{
    CyclesConfig, CyclesEngine, Engine, EngineKind, ImageFormat, ImportLimits, Model, NoHooks,
    PreparedScene, RenderSpec, UsdEncoding,
};

/// The assets, by the folder entries of `../shared/assets/README.md`; the stage-composition and
/// stage-configuration folders by some of their stages that load (the `*_invalid` ones must fail,
/// and `*_parent_folder` name files outside the model's folder, which are not read; tests cover
/// both).
const ASSETS: &[(&str, &str)] = &[
    ("DamagedHelmet", "gltf/DamagedHelmet/DamagedHelmet.glb"),
    ("WaterBottle", "gltf/WaterBottle/PF_WaterBottle_MR.gltf"),
    ("BoxDraco", "gltf/compressed/BoxDraco.gltf"),
    ("BoxMeshopt (glb)", "gltf/compressed/BoxMeshopt.glb"),
    ("BoxMeshopt (gltf)", "gltf/compressed/BoxMeshopt.gltf"),
    (
        "TextureTransformTest",
        "usd/TextureTransformTest/TextureTransformTest.usd",
    ),
    (
        "NormalsTexture (usda)",
        "usd/NormalsTextureBiasAndScale/NormalsTextureBiasAndScale.usda",
    ),
    (
        "NormalsTexture (usdz)",
        "usd/NormalsTextureBiasAndScale/NormalsTextureBiasAndScale.usdz",
    ),
    ("RoughnessTest", "usd/RoughnessTest/RoughnessTest.usdz"),
    (
        "AlphaBlendModeTest",
        "usd/AlphaBlendModeTest/AlphaBlendModeTest.usd",
    ),
    (
        "payload_child_folder",
        "usd/foundation/stage_composition/payload/payload_child_folder.usda",
    ),
    (
        "reference_child_folder",
        "usd/foundation/stage_composition/references/reference_child_folder.usda",
    ),
    (
        "sublayer_same_folder",
        "usd/foundation/stage_composition/subLayer/sublayer_same_folder.usda",
    ),
    (
        "class_inherit",
        "usd/foundation/stage_composition/class_inherit.usda",
    ),
    ("purpose", "usd/foundation/stage_composition/purpose.usda"),
    (
        "upAxis_Z",
        "usd/foundation/stage_configuration/upAxis/upAxis_Z.usda",
    ),
    (
        "metersPerUnit_mix",
        "usd/foundation/stage_configuration/metersPerUnit/metersPerUnit_mix.usda",
    ),
    (
        "PayloadAndReference",
        "usd/CompositionPuzzles/PayloadAndReference/solution/shot.usda",
    ),
    (
        "VariantSetAndLocal2",
        "usd/CompositionPuzzles/VariantSetAndLocal2/puzzle_2.usda",
    ),
];

struct Options {
    size: u32,
    samples: u32,
    compare_size: u32,
    compare_samples: u32,
    engines: Vec<EngineKind>,
    only: Option<String>,
    reps: usize,
    out: PathBuf,
    assets: PathBuf,
    python: PathBuf,
}

fn parse_options() -> Result<Options> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut opts = Options {
        size: 512,
        samples: 64,
        compare_size: 256,
        compare_samples: 32,
        engines: vec![EngineKind::Native, EngineKind::Cycles],
        only: None,
        reps: 3,
        out: std::env::temp_dir().join("lightbox-bench-assets"),
        assets: root.join("../shared/assets"),
        python: root.join(".tools/venv/bin/python"),
    };
    if let Some(p) = std::env::var_os("LIGHTBOX_TOOLS_PYTHON") {
        opts.python = PathBuf::from(p);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => opts.size = value()?.parse().context("--size")?,
            "--samples" => opts.samples = value()?.parse().context("--samples")?,
            "--compare-size" => opts.compare_size = value()?.parse().context("--compare-size")?,
            "--compare-samples" => {
                opts.compare_samples = value()?.parse().context("--compare-samples")?
            }
            "--engines" => {
                opts.engines = value()?
                    .split(',')
                    .map(|e| e.parse::<EngineKind>())
                    .collect::<Result<_, _>>()?
            }
            "--only" => opts.only = Some(value()?),
            "--reps" => opts.reps = value()?.parse::<usize>().context("--reps")?.max(1),
            "--out" => opts.out = PathBuf::from(value()?),
            "--assets" => opts.assets = PathBuf::from(value()?),
            "--python" => opts.python = PathBuf::from(value()?),
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(opts)
}

fn is_usd(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("usd" | "usda" | "usdc" | "usdz")
    )
}

/// The model's bytes as `lightbox render` hands them to an engine: a `.gltf` bundled with the
/// files beside it into one GLB, a USD stage with the layers and textures it names packaged
/// into one usdz.
fn load(path: &Path, limits: &ImportLimits) -> Result<Vec<u8>> {
    if is_usd(path) {
        return read_usd_model(path, limits).with_context(|| format!("loading {}", path.display()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if external_files(&bytes)?.is_empty() {
        return Ok(bytes);
    }
    let folder = DirResources::beside(path)?;
    pack_glb(&bytes, &folder, limits).with_context(|| format!("loading {}", path.display()))
}

/// Files in the loaded model: the entries of a usdz package, else 1 (a GLB holds them all).
fn files_in(bytes: &[u8]) -> usize {
    let n = bytes.len();
    if bytes.starts_with(b"PK") && n >= 22 {
        // The end-of-central-directory record (no comment) holds the entry count.
        return u16::from_le_bytes([bytes[n - 12], bytes[n - 11]]) as usize;
    }
    1
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// A decoded 8-bit RGBA render.
struct Rgba {
    width: u32,
    height: u32,
    pixels: Vec<[f32; 4]>,
}

fn decode(png_bytes: &[u8]) -> Result<Rgba> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|c| {
            let v = |i: usize| c[i.min(channels - 1)] as f32 / 255.0;
            match channels {
                4 => [v(0), v(1), v(2), v(3)],
                3 => [v(0), v(1), v(2), 1.0],
                2 => [v(0), v(0), v(0), v(1)],
                _ => [v(0), v(0), v(0), 1.0],
            }
        })
        .collect();
    Ok(Rgba {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// The smallest box holding every pixel either image covers (alpha ≥ 0.9: the object, not its
/// soft shadow), grown by 8 pixels; the whole image when neither covers any.
fn object_box(a: &Rgba, b: &Rgba) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in 0..a.height {
        for x in 0..a.width {
            let i = (y * a.width + x) as usize;
            if a.pixels[i][3] >= 0.9 || b.pixels[i][3] >= 0.9 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 > x1 {
        return (0, 0, a.width, a.height);
    }
    let grow = 8;
    (
        x0.saturating_sub(grow),
        y0.saturating_sub(grow),
        (x1 + grow + 1).min(a.width),
        (y1 + grow + 1).min(a.height),
    )
}

/// Rec. 709 luma of a crop, composited over white (as `LumaImage::from_png` reads images).
fn luma_crop(image: &Rgba, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> LumaImage {
    let mut values = Vec::with_capacity(((x1 - x0) * (y1 - y0)) as usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let [r, g, b, a] = image.pixels[(y * image.width + x) as usize];
            let luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
            values.push(luma * a + (1.0 - a));
        }
    }
    LumaImage {
        width: x1 - x0,
        height: y1 - y0,
        values,
    }
}

/// SSIM of the native render against the Cycles one over the object's box.
fn object_ssim(native: &[u8], cycles: &[u8]) -> Result<f64> {
    let (a, b) = (decode(native)?, decode(cycles)?);
    if (a.width, a.height) != (b.width, b.height) {
        bail!("image sizes differ");
    }
    let frame = object_box(&a, &b);
    Ok(luma_crop(&a, frame).ssim(&luma_crop(&b, frame))?)
}

/// Mean FLIP of each (reference, test) pair with `render-runtime/bench/flip.py`.
fn flip(pairs: &[(PathBuf, PathBuf)]) -> Result<Vec<f64>> {
    let python = render_runtime::engine::cycles::find_blender_python()
        .context("no Blender Python for FLIP (tools/setup-bpy.sh)")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/flip.py");
    let mut out = Vec::with_capacity(pairs.len());
    for (reference, test) in pairs {
        let run = Command::new(&python)
            .arg(&script)
            .arg(reference)
            .arg(test)
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        if !run.status.success() {
            bail!("flip.py: {}", String::from_utf8_lossy(&run.stderr));
        }
        let json: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        out.push(
            json["flip"][0]
                .as_f64()
                .context("flip.py printed no value")?,
        );
    }
    Ok(out)
}

/// Opens and traverses each stage with usd-core `reps` times (every prim's type, every mesh's
/// points: what an importer reads), printing `{path: median seconds}` as JSON.
const USD_CORE_TRAVERSE: &str = r#"
import json, sys, time
from pxr import Usd, UsdGeom
reps = int(sys.argv[1])
result = {}
for path in sys.argv[2:]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        stage = Usd.Stage.Open(path)
        for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
            prim.GetTypeName()
            if prim.IsA(UsdGeom.Mesh):
                UsdGeom.Mesh(prim).GetPointsAttr().Get()
        times.append(time.perf_counter() - start)
        del stage
    times.sort()
    result[path] = times[len(times) // 2]
print(json.dumps(result))
"#;

struct Row {
    name: &'static str,
    path: PathBuf,
    files: usize,
    megabytes: f64,
    collect_s: f64,
    import_s: f64,
    triangles: usize,
    native_s: Option<f64>,
    cycles: Option<(f64, f64)>,
    images: Option<(PathBuf, PathBuf)>,
    ssim: Option<f64>,
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// What every asset is measured with.
struct Plan<'a> {
    opts: &'a Options,
    /// The timed native render.
    spec: RenderSpec,
    /// The native vs Cycles pair.
    compare: RenderSpec,
    limits: ImportLimits,
    native: bool,
}

/// Loads, imports and renders one asset with each engine.
fn measure(
    name: &'static str,
    path: &Path,
    plan: &Plan<'_>,
    cycles: Option<&mut CyclesEngine>,
) -> Result<Row> {
    let (opts, spec, compare, limits) = (plan.opts, &plan.spec, &plan.compare, &plan.limits);
    let path = path.to_path_buf();
    let mut collect = Vec::new();
    let mut import = Vec::new();
    let mut loaded = None;
    for _ in 0..opts.reps {
        let t0 = Instant::now();
        let bytes = load(&path, limits)?;
        collect.push(t0.elapsed());
        let t1 = Instant::now();
        let scene = if UsdEncoding::sniff(&bytes).is_some() {
            render_runtime::import_usd_with_limits(&bytes, limits)?
        } else {
            render_runtime::import_gltf_with_limits(&bytes, limits)?
        };
        import.push(t1.elapsed());
        loaded = Some((bytes, scene));
    }
    let (bytes, scene) = loaded.expect("at least one rep");
    let mut row = Row {
        name,
        path: path.clone(),
        files: files_in(&bytes),
        megabytes: bytes.len() as f64 / 1e6,
        collect_s: median(collect),
        import_s: median(import),
        triangles: scene.instanced_triangle_count(),
        native_s: None,
        cycles: None,
        images: None,
        ssim: None,
    };
    let native_png = opts.out.join(format!("{}-native.png", slug(name)));
    let pair = |engine: &str| {
        opts.out.join(format!(
            "{}-{engine}-{}px-{}spp.png",
            slug(name),
            compare.width,
            compare.samples.unwrap_or(0)
        ))
    };
    let (native_pair, cycles_pair) = (pair("native"), pair("cycles"));
    let mut native_bytes = None;
    if plan.native {
        let prepared = PreparedScene::from_scene(scene)?;
        let out = prepared.render(spec, &NoHooks)?;
        row.native_s = Some((out.timings.render + out.timings.denoise).as_secs_f64());
        std::fs::write(&native_png, &out.images[0].bytes)?;
        if cycles.is_some() {
            let bytes = if compare == spec {
                out.images[0].bytes.clone()
            } else {
                prepared.render(compare, &NoHooks)?.images[0].bytes.clone()
            };
            std::fs::write(&native_pair, &bytes)?;
            native_bytes = Some(bytes);
        }
    }
    if let Some(engine) = cycles {
        match engine.render_spec(Model::Bytes(&bytes), compare, &NoHooks) {
            Ok(out) => {
                row.cycles = Some((
                    out.timings.import.as_secs_f64(),
                    (out.timings.render + out.timings.denoise).as_secs_f64(),
                ));
                std::fs::write(&cycles_pair, &out.images[0].bytes)?;
                if let Some(native) = &native_bytes {
                    row.ssim = Some(object_ssim(native, &out.images[0].bytes)?);
                    row.images = Some((cycles_pair.clone(), native_pair.clone()));
                }
            }
            Err(e) => println!("{name}: cycles failed: {:#}", anyhow::Error::new(e)),
        }
    }
    Ok(row)
}

fn main() -> Result<()> {
    let opts = parse_options()?;
    let limits = ImportLimits::default();
    std::fs::create_dir_all(&opts.out)?;
    let spec = RenderSpec {
        width: opts.size,
        height: opts.size,
        samples: Some(opts.samples),
        format: ImageFormat::Png { bit_depth: 8 },
        ..RenderSpec::default()
    };
    let compare = RenderSpec {
        width: opts.compare_size,
        height: opts.compare_size,
        samples: Some(opts.compare_samples),
        ..spec.clone()
    };
    let mut cycles = None;
    if opts.engines.contains(&EngineKind::Cycles) {
        let started = Instant::now();
        match CyclesEngine::start(CyclesConfig::from_env()) {
            Ok(engine) => {
                if let Some(info) = engine.worker_info() {
                    println!(
                        "cycles: Blender {} on {}, started in {:.1} s",
                        info.blender,
                        info.device,
                        started.elapsed().as_secs_f64()
                    );
                }
                cycles = Some(engine);
            }
            Err(e) => println!("cycles engine unavailable: {:#}", anyhow::Error::new(e)),
        }
    }
    let native = opts.engines.contains(&EngineKind::Native);
    println!(
        "{} threads; native timed at {}x{}, {} spp; native vs Cycles at {}x{}, {} spp; denoise \
         auto; images in {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.size,
        opts.size,
        opts.samples,
        opts.compare_size,
        opts.compare_size,
        opts.compare_samples,
        opts.out.display()
    );

    let plan = Plan {
        opts: &opts,
        spec,
        compare,
        limits,
        native,
    };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for &(name, rel) in ASSETS {
        if opts.only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let path = opts.assets.join(rel);
        match measure(name, &path, &plan, cycles.as_mut()) {
            Ok(row) => rows.push(row),
            Err(e) => {
                println!("{name}: failed: {e:#}");
                failed.push(name);
            }
        }
        eprintln!("{name}: done");
    }

    let pairs: Vec<(PathBuf, PathBuf)> = rows.iter().filter_map(|r| r.images.clone()).collect();
    let mut flips = if pairs.is_empty() {
        Vec::new()
    } else {
        flip(&pairs).unwrap_or_else(|e| {
            println!("(no FLIP: {e:#})");
            Vec::new()
        })
    }
    .into_iter();

    println!(
        "\n| asset | files | MB | collect s | import s | triangles | native render s ({}², {} spp) | cycles import s | cycles render s ({}², {} spp) | SSIM (object) | FLIP |",
        opts.size, opts.samples, opts.compare_size, opts.compare_samples
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let flip = row.images.as_ref().and_then(|_| flips.next());
        println!(
            "| {} | {} | {:.3} | {:.4} | {:.4} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.files,
            row.megabytes,
            row.collect_s,
            row.import_s,
            row.triangles,
            cell(row.native_s, 2),
            cell(row.cycles.map(|c| c.0), 2),
            cell(row.cycles.map(|c| c.1), 2),
            cell(row.ssim, 3),
            cell(flip, 3),
        );
    }

    for name in &failed {
        println!("| {name} | failed (above) | | | | | | | | | |");
    }

    // Multi-file USD: our collect + import next to usd-core on the same stage.
    let stages: Vec<&Row> = rows
        .iter()
        .filter(|r| is_usd(&r.path) && r.files > 1)
        .collect();
    if stages.is_empty() {
        return Ok(());
    }
    let usd_core: Option<serde_json::Value> = Command::new(&opts.python)
        .args(["-c", USD_CORE_TRAVERSE, &opts.reps.to_string()])
        .args(stages.iter().map(|r| &r.path))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| serde_json::from_slice(&out.stdout).ok());
    if usd_core.is_none() {
        println!("\n(usd-core did not run from {})", opts.python.display());
    }
    println!(
        "\n| multi-file USD stage | files | ours: collect + import s | usd-core: open + traverse s |"
    );
    println!("|---|---:|---:|---:|");
    for row in stages {
        let theirs = usd_core
            .as_ref()
            .and_then(|v| v[row.path.to_string_lossy().as_ref()].as_f64());
        println!(
            "| {} | {} | {:.4} | {} |",
            row.name,
            row.files,
            row.collect_s + row.import_s,
            cell(theirs, 4)
        );
    }
    Ok(())
}
