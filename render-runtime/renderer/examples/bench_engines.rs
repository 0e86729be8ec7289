//! Native vs Cycles on the same jobs, side by side (prints numbers; not a timed test).
//!
//! The still is the fair comparison of issue #17 (`fair/mod.rs`): native, the project's Cycles
//! engine and plain Blender Cycles (`bench/plain_cycles.py`, Blender 5.0's defaults on the same
//! model, camera and lights) at equal spp, each scored by mean FLIP (NVIDIA's `flip-evaluator`)
//! against one high-sample Cycles render of the studio (`--ref-samples`), native also at other
//! sample counts (`--native-spp`) for the time to reach Cycles' error; with `--engines native`
//! only native runs. Then a turntable on each engine, and the warm-worker gain: a cold Blender
//! start plus a job, against the same job on the warm worker.
//!
//! ```text
//! cargo run --release -p render-runtime --example bench_engines -- \
//!     [--detail 1.0] [--size 256] [--samples 32] [--frames 6] [--ref-samples 512] [--native-spp 8,16,32,64,128] \
//!     [--turntable-size N] [--turntable-samples N] \
//!     [--only still|turntable|warm|ablate] [--variants a,b (for ablate; see bench/cycles_variants.py)] [--out DIR] [--device CPU|CUDA|OPTIX] [--engines native,cycles]
//! ```
//!
//! Blender's Python comes from `LIGHTBOX_BLENDER_PYTHON`, else `.tools/bpy/bin/python`, else
//! `/work/bpyvenv/bin/python`. `tools/gpu-check.sh` runs this at 2048x2048, 256 spp.
//! `bench_engines --compare A.png B.png` prints the SSIM and RMSE of two images.

#[path = "fair/mod.rs"]
mod fair;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lightbox_testmodels as testmodels;
use lightbox_testmodels::compare::compare_png;
use render_runtime::{
    CyclesConfig, CyclesEngine, DenoiseRequest, Engine, EngineKind, Model, NativeEngine, NoHooks,
    RenderOutput, RenderSpec, TurntableSpec,
};

struct Options {
    detail: f32,
    size: u32,
    samples: u32,
    frames: u32,
    turntable_size: Option<u32>,
    turntable_samples: Option<u32>,
    ref_samples: u32,
    native_spp: Vec<u32>,
    variants: Option<Vec<String>>,
    only: Option<String>,
    out: Option<PathBuf>,
    device: Option<String>,
    engines: Vec<EngineKind>,
}

fn parse_options() -> Result<Options> {
    let mut opts = Options {
        detail: 1.0,
        size: 256,
        samples: 32,
        frames: 6,
        turntable_size: None,
        turntable_samples: None,
        ref_samples: 512,
        native_spp: vec![8, 16, 32, 64, 128],
        variants: None,
        only: None,
        out: None,
        device: None,
        engines: vec![EngineKind::Native, EngineKind::Cycles],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--detail" => opts.detail = value()?.parse().context("--detail")?,
            "--size" => opts.size = value()?.parse().context("--size")?,
            "--samples" => opts.samples = value()?.parse().context("--samples")?,
            "--frames" => opts.frames = value()?.parse().context("--frames")?,
            "--turntable-size" => {
                opts.turntable_size = Some(value()?.parse().context("--turntable-size")?)
            }
            "--turntable-samples" => {
                opts.turntable_samples = Some(value()?.parse().context("--turntable-samples")?)
            }
            "--ref-samples" => opts.ref_samples = value()?.parse().context("--ref-samples")?,
            "--native-spp" => {
                opts.native_spp = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .context("--native-spp")?
            }
            "--variants" => opts.variants = Some(value()?.split(',').map(str::to_string).collect()),
            "--only" => opts.only = Some(value()?),
            "--out" => opts.out = Some(PathBuf::from(value()?)),
            "--device" => opts.device = Some(value()?),
            "--engines" => {
                opts.engines = value()?
                    .split(',')
                    .map(|e| e.parse::<EngineKind>())
                    .collect::<Result<_, _>>()?
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(opts)
}

fn cycles_config(opts: &Options) -> CyclesConfig {
    CyclesConfig {
        device: opts.device.clone(),
        ..CyclesConfig::from_env()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn timing_line(engine: &str, job: &str, out: &RenderOutput, wall: Duration) -> String {
    let t = &out.timings;
    format!(
        "{job:<10} {engine:<7} wall {:7.2} s | import {:6.2} build/sync {:6.2} render {:7.2} denoise {:6.2} ({}) encode {:5.2} | {} spp {} frame(s)",
        secs(wall),
        secs(t.import),
        secs(t.accel_build),
        secs(t.render),
        secs(t.denoise),
        out.denoiser.as_str(),
        secs(t.encode),
        out.samples,
        out.images.len(),
    )
}

struct Engines {
    native: Option<NativeEngine>,
    cycles: Option<CyclesEngine>,
}

impl Engines {
    fn get(&mut self, kind: EngineKind) -> Option<&mut dyn Engine> {
        match kind {
            EngineKind::Native => self.native.as_mut().map(|e| e as &mut dyn Engine),
            EngineKind::Cycles => self.cycles.as_mut().map(|e| e as &mut dyn Engine),
        }
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--compare") {
        // `--compare A.png B.png`: SSIM and RMSE of two stills (used by tools/gpu-check.sh).
        let (Some(a), Some(b)) = (argv.get(2), argv.get(3)) else {
            bail!("usage: bench_engines --compare A.png B.png");
        };
        let read = |p: &String| std::fs::read(p).with_context(|| format!("reading {p}"));
        println!("{a} vs {b}: {}", compare_png(&read(a)?, &read(b)?)?);
        return Ok(());
    }
    let opts = parse_options()?;
    let t0 = Instant::now();
    let glb = testmodels::bearing_glb(opts.detail);
    println!(
        "bearing GLB: detail {}, {:.1} MB, generated in {:.2} s; {} threads",
        opts.detail,
        glb.len() as f64 / 1e6,
        secs(t0.elapsed()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let wants = |name: &str| opts.only.as_deref().is_none_or(|o| o == name);

    let mut engines = Engines {
        native: opts
            .engines
            .contains(&EngineKind::Native)
            .then(NativeEngine::new),
        cycles: None,
    };
    if opts.engines.contains(&EngineKind::Cycles) {
        let t = Instant::now();
        match CyclesEngine::start(cycles_config(&opts)) {
            Ok(e) => {
                let info = e.worker_info().expect("started").clone();
                println!(
                    "cycles worker: Blender {} on {} {:?}, started in {:.2} s",
                    info.blender,
                    info.device,
                    info.devices,
                    secs(t.elapsed())
                );
                engines.cycles = Some(e);
            }
            Err(e) => println!("cycles engine unavailable: {:#}", anyhow::Error::new(e)),
        }
    }

    let still = RenderSpec {
        width: opts.size,
        height: opts.size,
        samples: Some(opts.samples),
        denoise: DenoiseRequest::Auto,
        ..RenderSpec::default()
    };
    let jobs: Vec<(&str, RenderSpec)> = vec![
        ("still", still.clone()),
        (
            "turntable",
            RenderSpec {
                width: opts.turntable_size.unwrap_or(opts.size),
                height: opts.turntable_size.unwrap_or(opts.size),
                samples: Some(opts.turntable_samples.unwrap_or(opts.samples)),
                turntable: Some(TurntableSpec {
                    frames: opts.frames,
                    ..TurntableSpec::default()
                }),
                ..still.clone()
            },
        ),
    ];
    if opts.only.as_deref() == Some("ablate") {
        let default_variants = [
            "no_catcher",
            "old_catcher",
            "reach_2",
            "reach_6",
            "opaque_film",
            "uniform_bounces",
            "default_bounces",
            "diffuse_1",
            "glossy_2",
            "uniform_world",
            "world_importance",
            "plain_filter",
        ];
        let variants: Vec<&str> = match &opts.variants {
            Some(v) => v.iter().map(String::as_str).collect(),
            None => default_variants.to_vec(),
        };
        fair::cycles_ablation(
            &glb,
            opts.size,
            opts.samples,
            &variants,
            &opts
                .out
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("lightbox-bench-engines")),
        )?;
        return Ok(());
    }
    // The still: the fair table when Cycles is there (it renders the reference), else native.
    if wants("still") && engines.cycles.is_some() {
        // The table runs its own workers; this one waits for the turntable.
        fair::fair_table(
            "still",
            &glb,
            &fair::FairOptions {
                size: opts.size,
                samples: opts.samples,
                ref_samples: opts.ref_samples,
                native_spp: opts.native_spp.clone(),
                adaptive: Vec::new(),
                dir: opts
                    .out
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("lightbox-bench-engines")),
                device: opts.device.clone(),
            },
        )?;
    }

    for (name, spec) in &jobs {
        if !wants(name) || (*name == "still" && engines.cycles.is_some()) {
            continue;
        }
        for &kind in &opts.engines {
            let Some(engine) = engines.get(kind) else {
                continue;
            };
            let t = Instant::now();
            let out = engine.render_spec(Model::Bytes(&glb), spec, &NoHooks)?;
            let wall = t.elapsed();
            println!("{}", timing_line(kind.as_str(), name, &out, wall));
            if spec.turntable.is_some() {
                println!(
                    "{:<10} {:<7} per frame {:.2} s (scene and BVH kept across frames)",
                    "",
                    kind.as_str(),
                    secs(wall) / out.images.len().max(1) as f64
                );
            }
            if let Some(dir) = &opts.out {
                std::fs::create_dir_all(dir)?;
                let ext = out.images[0].format.extension();
                std::fs::write(
                    dir.join(format!("{name}-{}.{ext}", kind.as_str())),
                    &out.images[0].bytes,
                )?;
            }
        }
    }

    if wants("warm") && engines.cycles.is_some() {
        // Cold: a new Blender process for one job, as the old per-job workers ran it.
        let t = Instant::now();
        let mut cold = CyclesEngine::start(cycles_config(&opts))?;
        let startup = t.elapsed();
        let first = cold.render_spec(Model::Bytes(&glb), &still, &NoHooks)?;
        let cold_total = t.elapsed();
        // Warm: the same job again on that worker (model cached), then on a warm worker with
        // a model it has not seen (import paid, start-up not).
        let t = Instant::now();
        let warm = cold.render_spec(Model::Bytes(&glb), &still, &NoHooks)?;
        let warm_total = t.elapsed();
        let other = testmodels::bearing_glb(opts.detail * 0.999);
        let t = Instant::now();
        let new_model = cold.render_spec(Model::Bytes(&other), &still, &NoHooks)?;
        let new_model_total = t.elapsed();
        drop(cold);
        println!(
            "warm       cold start + job {:6.2} s (Blender start {:.2} s, import {:.2} s, render+denoise {:.2} s)",
            secs(cold_total),
            secs(startup),
            secs(first.timings.import),
            secs(first.timings.render + first.timings.denoise)
        );
        println!(
            "warm       same job, warm worker {:6.2} s (import cached) -> {:.1}x faster; new model on warm worker {:.2} s (import {:.2} s)",
            secs(warm_total),
            secs(cold_total) / secs(warm_total).max(1e-9),
            secs(new_model_total),
            secs(new_model.timings.import)
        );
        let _ = warm;
    }
    Ok(())
}
