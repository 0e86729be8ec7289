//! USD versus GLB import benchmark (prints numbers; not a timed test).
//!
//! Builds the procedural bearing, writes it as GLB, as our `.usda` and `.usdz`, and (when the
//! tools Python with `usd-core` is there) as a `.usdc` written by Pixar's USD, then imports each
//! several times in this one process, printing file size, import time and peak heap during the
//! import (measured by a counting allocator).
//!
//! Then multi-file USD, next to Pixar: the multi-file stages of `../shared/assets/usd` and a
//! generated one (the bearing with one referenced layer per part and a payload per variant),
//! each read from its folder (the files it names collected and packaged) and imported by us,
//! and opened and traversed by usd-core in the same run (median of `--reps`), side by side.
//! With `--render DIR` the textured assets are also rendered (512², native engine) into DIR.
//!
//! ```text
//! cargo run --release -p render-runtime --example bench_usd -- [--detail 1.0] [--reps 3] \
//!     [--python .tools/venv/bin/python] [--assets ../shared/assets/usd] [--render DIR]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lightbox_testmodels as testmodels;
use render_runtime::scene::export::export_glb;
use render_runtime::scene::usd::import_usd_report;
use render_runtime::scene::usd_files::read_usd_model;
use render_runtime::scene::usd_write::{export_usda, export_usdz};
use render_runtime::{
    import_gltf_with_limits, import_usd_with_limits, ImageFormat, ImportLimits, NoHooks,
    PreparedScene, RenderSpec,
};

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Options {
    detail: f32,
    reps: usize,
    python: PathBuf,
    assets: PathBuf,
    render: Option<PathBuf>,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        detail: 1.0,
        reps: 3,
        python: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python"),
        assets: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets/usd"),
        render: None,
    };
    if let Some(p) = std::env::var_os("LIGHTBOX_TOOLS_PYTHON") {
        options.python = PathBuf::from(p);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context(format!("{arg} needs a value"));
        match arg.as_str() {
            "--detail" => options.detail = value()?.parse()?,
            "--reps" => options.reps = value()?.parse::<usize>()?.max(1),
            "--python" => options.python = PathBuf::from(value()?),
            "--assets" => options.assets = PathBuf::from(value()?),
            "--render" => options.render = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// Recodes our usda as a Pixar-written usdc, or says why it could not.
fn pixar_usdc(python: &PathBuf, usda: &str) -> Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("lightbox-bench-usd-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (dir.join("bearing.usda"), dir.join("bearing.usdc"));
    std::fs::write(&input, usda)?;
    let script = "import sys\nfrom pxr import Sdf\nassert Sdf.Layer.FindOrOpen(sys.argv[1]).Export(sys.argv[2])\n";
    let status = Command::new(python)
        .args(["-c", script])
        .arg(&input)
        .arg(&output)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        bail!("usd-core could not write the usdc");
    }
    let bytes = std::fs::read(&output)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(bytes)
}

struct Measured {
    times: Vec<Duration>,
    peak_bytes: usize,
    triangles: usize,
    instances: usize,
}

fn measure(reps: usize, import: impl Fn() -> Result<(usize, usize)>) -> Result<Measured> {
    let mut times = Vec::with_capacity(reps);
    let mut peak_bytes = 0;
    let mut counts = (0, 0);
    for _ in 0..reps {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t0 = Instant::now();
        counts = import()?;
        times.push(t0.elapsed());
        peak_bytes = peak_bytes.max(PEAK.load(Ordering::Relaxed) - base);
    }
    times.sort();
    Ok(Measured {
        times,
        peak_bytes,
        triangles: counts.0,
        instances: counts.1,
    })
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let limits = ImportLimits::default();
    let scene = testmodels::bearing_scene(options.detail);
    println!(
        "bearing detail {}: {} meshes, {} instances, {} triangles rendered ({} stored)",
        options.detail,
        scene.meshes.len(),
        scene.instances.len(),
        scene.instanced_triangle_count(),
        scene.unique_triangle_count()
    );
    let glb = export_glb(&scene);
    let usda = export_usda(&scene);
    let usdz = export_usdz(&scene);
    let usdc = match pixar_usdc(&options.python, &usda) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            println!("(no usdc: {e:#})");
            None
        }
    };
    drop(scene);

    let mut inputs: Vec<(&str, &[u8])> = vec![
        ("glb", &glb),
        ("usda (ours)", usda.as_bytes()),
        ("usdz (ours)", &usdz),
    ];
    if let Some(usdc) = &usdc {
        inputs.push(("usdc (Pixar)", usdc));
    }

    println!(
        "\n{:<14} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9}",
        "format", "size MB", "min s", "median s", "peak heap MB", "triangles", "instances"
    );
    for (name, bytes) in inputs {
        let is_glb = name == "glb";
        let m = measure(options.reps, || {
            let scene = if is_glb {
                import_gltf_with_limits(bytes, &limits)?
            } else {
                import_usd_with_limits(bytes, &limits)?
            };
            Ok((scene.instanced_triangle_count(), scene.instances.len()))
        })
        .with_context(|| format!("importing {name}"))?;
        println!(
            "{:<14} {:>10.1} {:>10.3} {:>10.3} {:>12.1} {:>10} {:>9}",
            name,
            bytes.len() as f64 / 1e6,
            m.times[0].as_secs_f64(),
            m.times[m.times.len() / 2].as_secs_f64(),
            m.peak_bytes as f64 / 1e6,
            m.triangles,
            m.instances
        );
    }
    multi_file(&options, &limits)
}

/// Opens and traverses each stage with usd-core `reps` times (reading every prim's type and
/// every mesh's points, what an importer reads), printing the median seconds per stage.
const PIXAR_TRAVERSE: &str = r#"
import json, sys, time
from pxr import Usd, UsdGeom
reps = int(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        stage = Usd.Stage.Open(path)
        prims = 0
        for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
            prims += 1
            prim.GetTypeName()
            if prim.IsA(UsdGeom.Mesh):
                UsdGeom.Mesh(prim).GetPointsAttr().Get()
        times.append(time.perf_counter() - t0)
        del stage
    times.sort()
    out[path] = {"median": times[len(times) // 2], "prims": prims}
print(json.dumps(out))
"#;

/// Writes the bearing as a multi-file stage: one layer per distinct part mesh referenced from
/// the root, a sublayer, and a variant set whose selected variant brings in a payload.
fn write_split_bearing(dir: &std::path::Path, detail: f32) -> Result<PathBuf> {
    let scene = testmodels::bearing_scene(detail);
    std::fs::create_dir_all(dir.join("parts"))?;
    let mut root = String::from(
        "#usda 1.0\n(\n    defaultPrim = \"World\"\n    metersPerUnit = 1\n    upAxis = \"Y\"\n    subLayers = [@lights.usda@]\n)\n\ndef Xform \"World\"\n{\n",
    );
    for (i, mesh) in scene.meshes.iter().enumerate() {
        // Each part layer is our writer's stage of that one mesh, placed once at the origin.
        let mut part = render_runtime::scene::Scene {
            materials: scene.materials.clone(),
            ..Default::default()
        };
        let m = part.add_mesh(mesh.clone());
        part.add_instance(
            m,
            render_runtime::math::Affine::IDENTITY,
            Some("Part".into()),
        );
        std::fs::write(dir.join(format!("parts/part_{i}.usda")), export_usda(&part))?;
    }
    for (k, inst) in scene.instances.iter().enumerate() {
        let c = inst.transform.to_cols_4x4();
        let rows: Vec<String> = c
            .iter()
            .map(|r| format!("({}, {}, {}, {})", r[0], r[1], r[2], r[3]))
            .collect();
        let arc = if k == 0 {
            // The first placement comes through a variant's payload.
            format!(
                "(\n        variants = {{\n            string lod = \"full\"\n        }}\n        prepend variantSets = \"lod\"\n    )\n    {{\n        variantSet \"lod\" = {{\n            \"full\" (\n                prepend payload = @parts/part_{}.usda@\n            ) {{\n            }}\n            \"none\" {{\n            }}\n        }}\n",
                inst.mesh
            )
        } else {
            format!(
                "(\n        prepend references = @parts/part_{}.usda@\n    )\n    {{\n",
                inst.mesh
            )
        };
        root.push_str(&format!(
            "    def \"Place_{k}\" {arc}        matrix4d xformOp:transform = ( {} )\n        uniform token[] xformOpOrder = [\"xformOp:transform\"]\n    }}\n",
            rows.join(", ")
        ));
    }
    root.push_str("}\n");
    std::fs::write(dir.join("lights.usda"), "#usda 1.0\nover \"World\"\n{\n}\n")?;
    let path = dir.join("bearing.usda");
    std::fs::write(&path, root)?;
    Ok(path)
}

fn multi_file(options: &Options, limits: &ImportLimits) -> Result<()> {
    let assets = &options.assets;
    let mut stages: Vec<(String, PathBuf)> = [
        (
            "PayloadAndReference",
            "CompositionPuzzles/PayloadAndReference/solution/shot.usda",
        ),
        (
            "VariantSetAndLocal2",
            "CompositionPuzzles/VariantSetAndLocal2/puzzle_2.usda",
        ),
        (
            "payload_child_folder",
            "foundation/stage_composition/payload/payload_child_folder.usda",
        ),
        (
            "sublayer_child_folder",
            "foundation/stage_composition/subLayer/sublayer_child_folder.usda",
        ),
        (
            "TextureTransformTest",
            "TextureTransformTest/TextureTransformTest.usd",
        ),
        (
            "NormalsTexture (usda)",
            "NormalsTextureBiasAndScale/NormalsTextureBiasAndScale.usda",
        ),
        (
            "NormalsTexture (usdz)",
            "NormalsTextureBiasAndScale/NormalsTextureBiasAndScale.usdz",
        ),
        ("RoughnessTest", "RoughnessTest/RoughnessTest.usdz"),
        (
            "AlphaBlendModeTest",
            "AlphaBlendModeTest/AlphaBlendModeTest.usd",
        ),
    ]
    .iter()
    .map(|(name, rel)| (name.to_string(), assets.join(rel)))
    .collect();
    for (_, path) in &stages {
        if !path.is_file() {
            bail!(
                "missing asset {} (see ../shared/assets/README.md)",
                path.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("lightbox-bench-usd-split-{}", std::process::id()));
    let split = write_split_bearing(&dir, options.detail)?;
    stages.push((format!("bearing, split ({})", options.detail), split));

    let pixar: serde_json::Value = {
        let out = Command::new(&options.python)
            .args(["-c", PIXAR_TRAVERSE, &options.reps.to_string()])
            .args(stages.iter().map(|(_, p)| p))
            .output()
            .with_context(|| format!("running {}", options.python.display()))?;
        if !out.status.success() {
            bail!("usd-core: {}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout)?
    };

    println!(
        "\n{:<26} {:>6} {:>9} {:>10} {:>10} {:>10} {:>12} {:>10} {:>8}",
        "multi-file stage",
        "files",
        "size MB",
        "collect s",
        "import s",
        "ours s",
        "usd-core s",
        "triangles",
        "textures"
    );
    for (name, path) in &stages {
        let mut collect_times = Vec::new();
        let mut import_times = Vec::new();
        let mut last = None;
        for _ in 0..options.reps {
            let t0 = Instant::now();
            let bytes = read_usd_model(path, limits)?;
            collect_times.push(t0.elapsed());
            let t1 = Instant::now();
            let import = import_usd_report(&bytes, limits).with_context(|| name.clone())?;
            import_times.push(t1.elapsed());
            last = Some((bytes, import));
        }
        collect_times.sort();
        import_times.sort();
        let (bytes, import) = last.expect("at least one rep");
        let files = if bytes.starts_with(b"PK") {
            zip_entries(&bytes)
        } else {
            1
        };
        let (c, i) = (
            collect_times[collect_times.len() / 2].as_secs_f64(),
            import_times[import_times.len() / 2].as_secs_f64(),
        );
        let key = path.to_string_lossy();
        println!(
            "{:<26} {:>6} {:>9.3} {:>10.4} {:>10.4} {:>10.4} {:>12.4} {:>10} {:>8}",
            name,
            files,
            bytes.len() as f64 / 1e6,
            c,
            i,
            c + i,
            pixar[key.as_ref()]["median"].as_f64().unwrap_or(f64::NAN),
            import.scene.instanced_triangle_count(),
            import.scene.textures.len()
        );
        if let Some(out_dir) = &options.render {
            if !import.scene.textures.is_empty() {
                render_png(&bytes, limits, &out_dir.join(format!("{}.png", slug(name))))?;
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn zip_entries(bytes: &[u8]) -> usize {
    // The end-of-central-directory record (no comment) holds the entry count.
    let n = bytes.len();
    if n < 22 {
        return 0;
    }
    u16::from_le_bytes([bytes[n - 12], bytes[n - 11]]) as usize
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Renders the imported stage at 512², 64 samples, with the native engine.
fn render_png(model: &[u8], limits: &ImportLimits, path: &std::path::Path) -> Result<()> {
    let prepared = PreparedScene::from_usd(model, limits)?;
    let spec = RenderSpec {
        width: 512,
        height: 512,
        samples: Some(64),
        format: ImageFormat::Png { bit_depth: 8 },
        ..RenderSpec::default()
    };
    let out = prepared.render(&spec, &NoHooks)?;
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, &out.images[0].bytes)?;
    println!("    rendered {}", path.display());
    Ok(())
}
