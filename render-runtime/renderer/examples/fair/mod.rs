//! The fair comparison shared by `bench_render` and `bench_engines` (issue #17): native, the
//! project's Cycles engine and plain Blender Cycles (`bench/plain_cycles.py`: the same model,
//! camera, lights and world, otherwise Blender 5.0's defaults) at equal spp, each image scored by
//! mean FLIP (`bench/flip.py`, NVIDIA's `flip-evaluator`) against one high-sample render of the
//! studio by the Cycles engine, computed once per run.

// Shared by two examples, each of which uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use render_runtime::{
    CyclesConfig, CyclesEngine, DenoiseRequest, Engine, Model, NativeEngine, NoHooks, RenderOutput,
    RenderSpec,
};

pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

/// Blender's Python (with `flip-evaluator`, installed by `tools/setup-bpy.sh`).
pub fn blender_python() -> Option<PathBuf> {
    render_runtime::engine::cycles::find_blender_python()
}

/// The project's Cycles engine (`worker_script: None`) or another worker script speaking its
/// protocol, such as plain Cycles.
pub fn start_cycles(
    worker_script: Option<PathBuf>,
    device: Option<String>,
) -> Result<CyclesEngine> {
    let config = CyclesConfig {
        worker_script,
        device,
        ..CyclesConfig::from_env()
    };
    CyclesEngine::start(config).map_err(|e| anyhow::anyhow!("{:#}", anyhow::Error::new(e)))
}

pub fn start_plain_cycles(device: Option<String>) -> Result<CyclesEngine> {
    start_cycles(Some(bench_dir().join("plain_cycles.py")), device)
}

/// Mean FLIP of each test image against `reference` (PNG files).
pub fn flip(reference: &Path, tests: &[PathBuf]) -> Result<Vec<f64>> {
    let python = blender_python().context("no Blender Python for FLIP (tools/setup-bpy.sh)")?;
    let output = Command::new(&python)
        .arg(bench_dir().join("flip.py"))
        .arg(reference)
        .args(tests)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "flip.py failed (tools/setup-bpy.sh installs flip-evaluator): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .context("flip.py printed no JSON")?;
    let values: Vec<f64> = json["flip"]
        .as_array()
        .context("flip.py: no flip array")?
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    if values.len() != tests.len() {
        bail!(
            "flip.py returned {} values for {} images",
            values.len(),
            tests.len()
        );
    }
    Ok(values)
}

/// One render of the comparison.
pub struct Shot {
    pub label: String,
    pub spp: u32,
    /// Average samples per pixel traced (below `spp` where adaptive sampling stopped pixels).
    pub mean_spp: f64,
    /// Render + denoise (scene sync, BVH build, import and encode excluded).
    pub render: Duration,
    /// The whole call, import and encode included.
    pub wall: Duration,
    /// CPU seconds of the process that rendered (Blender's worker, or this one for native)
    /// during the call: on a shared machine the wall clock also measures the neighbours.
    pub cpu: f64,
    pub denoiser: &'static str,
    pub png: PathBuf,
    pub flip: f64,
}

pub fn render_to(
    engine: &mut dyn Engine,
    pid: u32,
    glb: &[u8],
    spec: &RenderSpec,
    label: &str,
    dir: &Path,
) -> Result<(Shot, RenderOutput)> {
    let cpu0 = process_cpu_s(pid);
    let t = Instant::now();
    let out = engine
        .render_spec(Model::Bytes(glb), spec, &NoHooks)
        .with_context(|| format!("{label} render"))?;
    let wall = t.elapsed();
    let cpu = process_cpu_s(pid) - cpu0;
    let png = dir.join(format!("{label}.png"));
    std::fs::write(&png, &out.images[0].bytes)?;
    Ok((
        Shot {
            label: label.to_string(),
            spp: out.samples,
            mean_spp: out.mean_samples,
            render: out.timings.render + out.timings.denoise,
            wall,
            cpu,
            denoiser: out.denoiser.as_str(),
            png,
            flip: f64::NAN,
        },
        out,
    ))
}

/// The process whose CPU time a render spends: Blender's worker, or this one for native.
pub fn cycles_pid(engine: &CyclesEngine) -> u32 {
    engine.worker_info().map_or(0, |i| i.pid)
}

pub struct FairOptions {
    pub size: u32,
    pub samples: u32,
    pub ref_samples: u32,
    /// Native sample counts tried to find the time to reach the target error.
    pub native_spp: Vec<u32>,
    /// Adaptive-sampling thresholds: each adds native rows at every `native_spp` budget.
    pub adaptive: Vec<f32>,
    pub dir: PathBuf,
    pub device: Option<String>,
}

/// Renders the comparison and prints its table; returns every shot.
pub fn fair_table(name: &str, glb: &[u8], opts: &FairOptions) -> Result<Vec<Shot>> {
    std::fs::create_dir_all(&opts.dir)?;
    let spec = |samples: u32| RenderSpec {
        width: opts.size,
        height: opts.size,
        samples: Some(samples),
        denoise: DenoiseRequest::Auto,
        ..RenderSpec::default()
    };
    let mut cycles = start_cycles(None, opts.device.clone())?;
    let mut plain = start_plain_cycles(opts.device.clone())?;
    let mut native = NativeEngine::new();
    let s = opts.size;

    let cycles_id = cycles_pid(&cycles);
    let plain_id = cycles_pid(&plain);
    let (reference, _) = render_to(
        &mut cycles,
        cycles_id,
        glb,
        &spec(opts.ref_samples),
        &format!("{name}-reference-cycles-{}spp", opts.ref_samples),
        &opts.dir,
    )?;
    println!(
        "{name}: reference = Cycles engine, {s}x{s}, {} spp, OIDN: {:.2} s render+denoise; images in {}",
        opts.ref_samples,
        reference.render.as_secs_f64(),
        opts.dir.display()
    );
    let mut shots = Vec::new();
    // Plain first and Cycles second: each pays its own import on its first render, which the
    // render+denoise figure leaves out anyway.
    let (shot, _) = render_to(
        &mut plain,
        plain_id,
        glb,
        &spec(opts.samples),
        &format!("{name}-plain-cycles-{}spp", opts.samples),
        &opts.dir,
    )?;
    shots.push(shot);
    let (shot, _) = render_to(
        &mut cycles,
        cycles_id,
        glb,
        &spec(opts.samples),
        &format!("{name}-cycles-engine-{}spp", opts.samples),
        &opts.dir,
    )?;
    shots.push(shot);
    drop((cycles, plain));
    // A first tiny render pays the import, the BVH and OIDN's start-up, as the engines' first
    // renders above did (their import and sync are not in render+denoise either).
    native.render_spec(
        Model::Bytes(glb),
        &RenderSpec {
            width: 32,
            height: 32,
            samples: Some(1),
            ..spec(1)
        },
        &NoHooks,
    )?;
    for &spp in &opts.native_spp {
        let (shot, _) = render_to(
            &mut native,
            std::process::id(),
            glb,
            &spec(spp),
            &format!("{name}-native-{spp}spp"),
            &opts.dir,
        )?;
        shots.push(shot);
        for &threshold in &opts.adaptive {
            let (shot, _) = render_to(
                &mut native,
                std::process::id(),
                glb,
                &RenderSpec {
                    adaptive_threshold: threshold,
                    ..spec(spp)
                },
                &format!("{name}-native-adaptive{threshold}-{spp}spp"),
                &opts.dir,
            )?;
            shots.push(shot);
        }
    }
    let pngs: Vec<PathBuf> = shots.iter().map(|s| s.png.clone()).collect();
    for (shot, f) in shots.iter_mut().zip(flip(&reference.png, &pngs)?) {
        shot.flip = f;
    }

    println!(
        "{:<34} {:>5} {:>7} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "", "spp", "avg spp", "render s", "wall s", "CPU s", "denoise", "FLIP"
    );
    for shot in &shots {
        println!(
            "{:<34} {:>5} {:>7.1} {:>9.2} {:>9.2} {:>8.2} {:>8} {:>7.4}",
            shot.label,
            shot.spp,
            shot.mean_spp,
            shot.render.as_secs_f64(),
            shot.wall.as_secs_f64(),
            shot.cpu,
            shot.denoiser,
            shot.flip
        );
    }
    println!(
        "{name}: render s = render+denoise wall seconds (the figures below); CPU s = the renderer process's CPU seconds \
         for the whole call, for a loaded machine ({} cores here)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let plain_shot = &shots[0];
    let cycles_shot = &shots[1];
    let target = cycles_shot.flip;
    println!(
        "{name}: equal spp ({} spp): native {:.2} s, Cycles engine {:.2} s ({:.2}x plain), plain Cycles {:.2} s \
         [#17 goal: Cycles engine within 1.3x of plain: {}]",
        opts.samples,
        shots
            .iter()
            .find(|s| s.label.starts_with(&format!("{name}-native-")) && s.spp == opts.samples)
            .map_or(f64::NAN, |s| s.render.as_secs_f64()),
        cycles_shot.render.as_secs_f64(),
        cycles_shot.render.as_secs_f64() / plain_shot.render.as_secs_f64(),
        plain_shot.render.as_secs_f64(),
        met(cycles_shot.render.as_secs_f64() <= 1.3 * plain_shot.render.as_secs_f64())
    );
    println!(
        "{name}: plain Cycles' FLIP {:.4} includes what its setup leaves out (no shadow catcher: the contact shadow is missing)",
        plain_shot.flip
    );
    // The fastest native render (adaptive or not) that reaches the target.
    let reached = shots[2..]
        .iter()
        .filter(|s| s.flip <= target)
        .min_by(|a, b| a.render.cmp(&b.render));
    let best = shots[2..]
        .iter()
        .min_by(|a, b| a.flip.total_cmp(&b.flip))
        .context("no native shots")?;
    let plain_s = plain_shot.render.as_secs_f64();
    match reached {
        Some(n) => println!(
            "{name}: HEADLINE time to reach Cycles-{}-spp-with-OIDN's FLIP {target:.4}: native {:.2} s ({} spp) vs plain Cycles {plain_s:.2} s \
             = {:.2}x plain's time [#17 goal: at most 1/5 = 0.20x: {}]",
            opts.samples,
            n.render.as_secs_f64(),
            n.spp,
            n.render.as_secs_f64() / plain_s,
            met(n.render.as_secs_f64() * 5.0 <= plain_s)
        ),
        None => println!(
            "{name}: HEADLINE time to reach Cycles-{}-spp-with-OIDN's FLIP {target:.4}: native never reaches it up to {} spp \
             (best FLIP {:.4} at {} spp, {:.2} s) vs plain Cycles {plain_s:.2} s [#17 goal: at most 1/5 of plain's time: NOT MET]",
            opts.samples,
            opts.native_spp.iter().max().copied().unwrap_or(0),
            best.flip,
            best.spp,
            best.render.as_secs_f64()
        ),
    }
    Ok(shots)
}

pub fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

/// What each studio setting of the Cycles engine costs (issue #17 Must-have 2): the engine's
/// worker with one setting changed at a time (`bench/cycles_variants.py`), and plain Cycles, at
/// one size and spp; render+denoise time and mean FLIP against the engine's own image (same spp
/// and seed, so the noise largely cancels and the FLIP shows what the setting changes).
pub fn cycles_ablation(
    glb: &[u8],
    size: u32,
    samples: u32,
    variants: &[&str],
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let spec = RenderSpec {
        width: size,
        height: size,
        samples: Some(samples),
        denoise: DenoiseRequest::Auto,
        ..RenderSpec::default()
    };
    let script = bench_dir().join("cycles_variants.py");
    let mut shots = Vec::new();
    let mut cpus = Vec::new();
    for &variant in std::iter::once(&"engine")
        .chain(variants)
        .chain(std::iter::once(&"plain"))
    {
        let mut engine = if variant == "plain" {
            start_plain_cycles(Some("CPU".into()))?
        } else {
            let launcher = dir.join(format!("variant-{variant}.py"));
            std::fs::write(
                &launcher,
                format!(
                    "import os, runpy\nos.environ['LIGHTBOX_CYCLES_VARIANT'] = {variant:?}\n\
                     runpy.run_path({:?}, run_name='__main__')\n",
                    script.display().to_string()
                ),
            )?;
            start_cycles(Some(launcher), Some("CPU".into()))?
        };
        // A first small render pays import and the first sync; the measured one does not.
        let warm = RenderSpec {
            width: 32,
            height: 32,
            samples: Some(1),
            ..spec.clone()
        };
        engine.render_spec(Model::Bytes(glb), &warm, &NoHooks)?;
        // Blender's CPU seconds as well as the wall clock: on a shared machine the wall clock
        // measures the neighbours too.
        let pid = cycles_pid(&engine);
        let (shot, _) = render_to(
            &mut engine,
            pid,
            glb,
            &spec,
            &format!("ablate-{variant}"),
            dir,
        )?;
        cpus.push(shot.cpu);
        shots.push(shot);
    }
    let pngs: Vec<PathBuf> = shots.iter().map(|s| s.png.clone()).collect();
    let flips = flip(&shots[0].png, &pngs)?;
    let base = cpus[0];
    let plain = cpus.last().copied().unwrap_or(f64::NAN);
    println!(
        "Cycles engine settings, one at a time, {size}x{size} {samples} spp \
         (Blender CPU seconds for the job and render+denoise wall seconds; FLIP vs the engine's image):"
    );
    println!(
        "{:<18} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "variant", "CPU s", "vs engine", "vs plain", "wall s", "FLIP"
    );
    for ((shot, f), cpu) in shots.iter().zip(flips).zip(&cpus) {
        println!(
            "{:<18} {:>7.2} {:>8.2}x {:>8.2}x {:>9.2} {:>7.4}",
            shot.label.trim_start_matches("ablate-"),
            cpu,
            cpu / base,
            cpu / plain,
            shot.render.as_secs_f64(),
            f
        );
    }
    Ok(())
}

/// User + system CPU seconds of a process and all its threads so far (Linux `/proc`).
pub fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The native denoisers at one spp against native's own high-sample render without denoising
/// (issue #17 Must-have 4): whether the built-in filter may stay as OIDN's fallback.
pub fn denoise_table(
    name: &str,
    glb: &[u8],
    size: u32,
    samples: u32,
    ref_samples: u32,
    dir: &Path,
) -> Result<Vec<Shot>> {
    std::fs::create_dir_all(dir)?;
    let spec = |samples: u32, denoise: DenoiseRequest| RenderSpec {
        width: size,
        height: size,
        samples: Some(samples),
        denoise,
        ..RenderSpec::default()
    };
    let mut native = NativeEngine::new();
    let pid = std::process::id();
    let (reference, _) = render_to(
        &mut native,
        pid,
        glb,
        &spec(ref_samples, DenoiseRequest::Off),
        &format!("{name}-native-reference-{ref_samples}spp-off"),
        dir,
    )?;
    let mut shots = Vec::new();
    let mut requests = vec![DenoiseRequest::Off, DenoiseRequest::Builtin];
    if render_runtime::spec::native_has_oidn() {
        requests.push(DenoiseRequest::Oidn);
    } else {
        println!(
            "{name}: OIDN not available here: {}",
            render_runtime::denoise::oidn::status()
                .err()
                .unwrap_or_default()
        );
    }
    for denoise in requests {
        let (shot, _) = render_to(
            &mut native,
            pid,
            glb,
            &spec(samples, denoise),
            &format!("{name}-native-{samples}spp-{denoise:?}").to_lowercase(),
            dir,
        )?;
        shots.push(shot);
    }
    let pngs: Vec<PathBuf> = shots.iter().map(|s| s.png.clone()).collect();
    for (shot, f) in shots.iter_mut().zip(flip(&reference.png, &pngs)?) {
        shot.flip = f;
    }
    println!(
        "{name}: native denoisers at {size}x{size} {samples} spp, mean FLIP against native at {ref_samples} spp undenoised:"
    );
    for shot in &shots {
        println!(
            "{:<40} denoise {:<8} {:>7.2} s render+denoise  FLIP {:.4}",
            shot.label,
            shot.denoiser,
            shot.render.as_secs_f64(),
            shot.flip
        );
    }
    Ok(shots)
}
