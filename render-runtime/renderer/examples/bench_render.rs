//! Renderer benchmark (prints numbers; not a timed test).
//!
//! Renders the full-detail procedural bearing (through its GLB bytes, so the importer is timed
//! too) at 512x512 64 spp with denoise, at 1024x1024 128 spp, and as a 12-frame 512x512
//! turntable, printing import, accel build, render, denoise, encode and Mrays/s per case.
//!
//! ```text
//! cargo run --release -p render-runtime --example bench_render -- \
//!     [--detail 1.0] [--only still512|still1024|turntable] [--out DIR] \
//!     [--blender-python /work/bpyvenv/bin/python]
//! ```
//!
//! With `--blender-python`, `render-runtime/bench/cycles_bench.py` renders the same GLB with
//! Blender Cycles on the CPU at the same sizes and samples, and the ratios are printed side by
//! side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lightbox_testmodels as testmodels;
use render_runtime::{
    DenoiseRequest, ImportLimits, NoHooks, PreparedScene, RenderOutput, RenderSpec, TurntableSpec,
};

struct Case {
    name: &'static str,
    size: u32,
    samples: u32,
    frames: Option<u32>,
}

const CASES: [Case; 3] = [
    Case {
        name: "still512",
        size: 512,
        samples: 64,
        frames: None,
    },
    Case {
        name: "still1024",
        size: 1024,
        samples: 128,
        frames: None,
    },
    Case {
        name: "turntable",
        size: 512,
        samples: 64,
        frames: Some(12),
    },
];

struct Options {
    detail: f32,
    only: Option<String>,
    out: Option<PathBuf>,
    blender_python: Option<PathBuf>,
}

fn parse_options() -> Result<Options> {
    let mut opts = Options {
        detail: 1.0,
        only: None,
        out: None,
        blender_python: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--detail" => opts.detail = value()?.parse().context("--detail")?,
            "--only" => opts.only = Some(value()?),
            "--out" => opts.out = Some(PathBuf::from(value()?)),
            "--blender-python" => opts.blender_python = Some(PathBuf::from(value()?)),
            "--bench" => {} // passed by `cargo bench`-style runners; harmless
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(opts)
}

fn print_native(name: &str, import_s: f64, build_s: f64, out: &RenderOutput, wall_s: f64) {
    let frames = out.images.len();
    let t = &out.timings;
    println!(
        "{name:<10} native  import {import_s:7.3} s  build {build_s:7.3} s  render {:7.3} s  denoise {:6.3} s ({})  encode {:6.3} s  \
         {:5.1} Mrays/s  {} spp  {} frame(s)  wall {wall_s:.2} s",
        t.render.as_secs_f64(),
        t.denoise.as_secs_f64(),
        out.denoiser.as_str(),
        t.encode.as_secs_f64(),
        out.mrays_per_s,
        out.samples,
        frames,
    );
    if frames > 1 {
        println!(
            "{:<10}         per frame: render {:.3} s, accel build reused (0 s after the first)",
            "",
            t.render.as_secs_f64() / frames as f64
        );
    }
}

#[derive(Debug, Default)]
struct CyclesResult {
    import_s: f64,
    render_s: f64,
}

fn run_cycles(python: &Path, glb: &Path, case: &Case) -> Result<CyclesResult> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/cycles_bench.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--glb", &glb.to_string_lossy()])
        .args([
            "--width",
            &case.size.to_string(),
            "--height",
            &case.size.to_string(),
        ])
        .args(["--samples", &case.samples.to_string()])
        .args(["--frames", &case.frames.unwrap_or(1).to_string()])
        .arg("--denoise")
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "cycles_bench.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Blender prints its own log lines; the result is the last line that parses as JSON.
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .context("cycles_bench.py printed no JSON result")?;
    Ok(CyclesResult {
        import_s: json["import_s"].as_f64().unwrap_or(f64::NAN),
        render_s: json["render_s"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() -> Result<()> {
    let opts = parse_options()?;
    let t0 = Instant::now();
    let glb = testmodels::bearing_glb(opts.detail);
    println!(
        "bearing GLB: detail {}, {:.1} MB, generated in {:.2} s",
        opts.detail,
        glb.len() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let glb_path = std::env::temp_dir().join(format!("lightbox-bench-bearing-{}.glb", opts.detail));
    std::fs::write(&glb_path, &glb).context("writing bench GLB")?;

    for case in CASES.iter() {
        if opts.only.as_deref().is_some_and(|o| o != case.name) {
            continue;
        }
        let wall = Instant::now();
        // Every case pays its own import and build, as a fresh job would.
        let prepared = PreparedScene::from_glb(&glb, &ImportLimits::default())?;
        let spec = RenderSpec {
            width: case.size,
            height: case.size,
            samples: Some(case.samples),
            denoise: DenoiseRequest::Auto,
            turntable: case.frames.map(|frames| TurntableSpec {
                frames,
                ..TurntableSpec::default()
            }),
            ..RenderSpec::default()
        };
        let out = prepared.render(&spec, &NoHooks)?;
        let wall_s = wall.elapsed().as_secs_f64();
        let (import_s, build_s) = (
            prepared.import_time().as_secs_f64(),
            prepared.accel_build_time().as_secs_f64(),
        );
        if case.name == "still512" {
            println!(
                "scene: {} parts, {} distinct meshes, {} triangles rendered ({} stored)",
                prepared.scene().instances.len(),
                prepared.scene().meshes.len(),
                prepared.scene().instanced_triangle_count(),
                prepared.scene().unique_triangle_count()
            );
        }
        print_native(case.name, import_s, build_s, &out, wall_s);
        if let Some(dir) = &opts.out {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(format!("{}.png", case.name)), &out.images[0].bytes)?;
            if let Some(anim) = &out.animation {
                std::fs::write(dir.join(format!("{}.webp", case.name)), &anim.bytes)?;
            }
        }
        if let Some(python) = &opts.blender_python {
            match run_cycles(python, &glb_path, case) {
                Ok(c) => {
                    let native_render =
                        out.timings.render.as_secs_f64() + out.timings.denoise.as_secs_f64();
                    println!(
                        "{:<10} cycles  import {:7.3} s  render+denoise {:7.3} s   ratio: import {:.1}x, render+denoise {:.1}x faster",
                        case.name,
                        c.import_s,
                        c.render_s,
                        c.import_s / import_s.max(1e-9),
                        c.render_s / native_render.max(1e-9)
                    );
                }
                Err(e) => println!("{:<10} cycles  unavailable: {e:#}", case.name),
            }
        }
    }
    Ok(())
}
