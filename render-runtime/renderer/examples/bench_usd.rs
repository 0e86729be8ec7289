//! USD versus GLB import benchmark (prints numbers; not a timed test).
//!
//! Builds the procedural bearing, writes it as GLB, as our `.usda` and `.usdz`, and (when the
//! tools Python with `usd-core` is there) as a `.usdc` written by Pixar's USD, then imports each
//! several times in this one process, printing file size, import time and peak heap during the
//! import (measured by a counting allocator).
//!
//! ```text
//! cargo run --release -p render-runtime --example bench_usd -- [--detail 1.0] [--reps 3] \
//!     [--python .tools/venv/bin/python]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use render_runtime::scene::export::export_glb;
use render_runtime::scene::usd_write::{export_usda, export_usdz};
use render_runtime::{import_gltf_with_limits, import_usd_with_limits, ImportLimits};
use lightbox_testmodels as testmodels;

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
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        detail: 1.0,
        reps: 3,
        python: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python"),
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
    Ok(())
}
