//! `lightbox render MODEL -o OUT`: renders a model locally and prints one timing line per stage
//! (import, accel build, render, denoise, encode).
//!
//! It takes every model the render function takes, by the same rule ([`ModelKind`]): GLB/glTF,
//! USD (`.usd`, `.usda`, `.usdc`, `.usdz`) and STEP (`.step`, `.stp`, tessellated here with the
//! tessellate function's code first). The render goes the function's one way: the spec is
//! resolved once into a plan for the engine, and the plan is rendered through the `Engine`
//! trait by [`lightbox_render::render_with`]. `--engine cycles` renders with Blender Cycles in
//! a worker process (Blender's Python from `LIGHTBOX_BLENDER_PYTHON` or `.tools/bpy`).
//!
//! The output's extension picks the format (`.png` or `.webp`); the model's kind, the output's
//! folder and the settings are checked before anything is rendered. With `--turntable N` the
//! frames are written next to OUT as `STEM_0001.EXT`, … and the animation as `STEM.webp`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lightbox_render::{render_with, ModelKind};
use lightbox_tessellate::TessellationParams;
use render_runtime::{
    DenoiseRequest, EngineKind, ImageFormat, NoHooks, RenderOutput, RenderPlan, RenderSpec,
    TurntableSpec,
};

use crate::tessellate_cmd::tessellate_step;

/// Image size given as `WIDTHxHEIGHT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|e| format!("size {s:?}: {e}"))
        };
        Ok(Size {
            width: parse(w)?,
            height: parse(h)?,
        })
    }
}

/// Which denoiser to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DenoiseArg {
    /// OIDN when the engine has it, otherwise the built-in filter.
    Auto,
    /// OIDN; an error where the engine lacks it (a native build without the `oidn` feature).
    Oidn,
    Builtin,
    Off,
}

impl From<DenoiseArg> for DenoiseRequest {
    fn from(d: DenoiseArg) -> DenoiseRequest {
        match d {
            DenoiseArg::Auto => DenoiseRequest::Auto,
            DenoiseArg::Oidn => DenoiseRequest::Oidn,
            DenoiseArg::Builtin => DenoiseRequest::Builtin,
            DenoiseArg::Off => DenoiseRequest::Off,
        }
    }
}

/// Render a model locally (or through the queues with --remote).
#[derive(Clone, Debug, clap::Args)]
pub struct RenderArgs {
    /// The model: GLB/glTF (.glb, .gltf with its files beside it), USD (.usd, .usda, .usdc, .usdz) or
    /// STEP (.step, .stp).
    pub model: PathBuf,
    /// Output image; the extension (.png or .webp) picks the format.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Image size as WIDTHxHEIGHT.
    #[arg(long, default_value = "512x512")]
    pub size: Size,
    /// Samples per pixel; without it the sample policy decides from the size.
    #[arg(long)]
    pub samples: Option<u32>,
    /// Render a turntable of N frames (animated WebP plus numbered frames).
    #[arg(long, value_name = "N")]
    pub turntable: Option<u32>,
    /// Denoiser.
    #[arg(long, value_enum, default_value_t = DenoiseArg::Auto)]
    pub denoise: DenoiseArg,
    /// Random seed; the same seed renders the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Render through the queues (routing rule applied) and download the result.
    #[arg(long)]
    pub remote: bool,
    /// Render engine: native (Lightbox's path tracer) or cycles (Blender Cycles).
    #[arg(long, default_value = "native")]
    pub engine: EngineKind,
}

fn format_for(path: &Path) -> Result<ImageFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(ImageFormat::Png { bit_depth: 8 }),
        Some("webp") => Ok(ImageFormat::Webp {
            quality: 90.0,
            lossless: false,
        }),
        _ => bail!("output {} must end in .png or .webp", path.display()),
    }
}

/// Checks that the output can be written before any time goes into rendering: its folder
/// exists and takes a new file (tried by creating and removing one, which also catches
/// read-only mounts and files where a folder should be).
fn check_output_folder(path: &Path) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let metadata = std::fs::metadata(folder)
        .with_context(|| format!("output folder {} does not exist", folder.display()))?;
    if !metadata.is_dir() {
        bail!("output folder {} is not a folder", folder.display());
    }
    let probe = folder.join(format!(".lightbox-render-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("output folder {} is not writable", folder.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The render spec the arguments ask for (shared by local and remote runs), after checking the
/// model's kind and the output path, so that a bad argument fails before any upload or render.
pub fn spec_from_args(args: &RenderArgs) -> Result<RenderSpec> {
    ModelKind::of_path(&args.model)?;
    let format = format_for(&args.output)?;
    check_output_folder(&args.output)?;
    Ok(RenderSpec {
        width: args.size.width,
        height: args.size.height,
        samples: args.samples,
        seed: args.seed,
        denoise: args.denoise.into(),
        turntable: args.turntable.map(|frames| TurntableSpec {
            frames,
            ..TurntableSpec::default()
        }),
        format,
        ..RenderSpec::default()
    })
}

/// The plan a local run renders: the spec resolved once for the engine `--engine` names.
fn plan_from_args(args: &RenderArgs) -> Result<RenderPlan> {
    let spec = spec_from_args(args)?;
    spec.resolve_for(args.engine)
        .context("invalid render settings")
}

/// Checks the settings of a `--remote` run before the upload. The worker decides which
/// denoisers it has (its build may include OIDN where this one does not), so `--denoise` is
/// left to it.
pub fn check_remote(args: &RenderArgs, spec: &RenderSpec) -> Result<()> {
    let undecided = RenderSpec {
        denoise: DenoiseRequest::Auto,
        ..spec.clone()
    };
    undecided
        .resolve_for(args.engine)
        .context("invalid render settings")?;
    Ok(())
}

/// A `.gltf` whose buffers and images are files beside it, bundled with them into one GLB (read
/// from its folder under the import's resource limits), as the function bundles the files
/// beside a model in the store; any other glTF is returned as it is.
fn bundle_gltf_files(model: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    use render_runtime::scene::gltf_decode::{external_files, pack_glb};
    let loading = || format!("loading {}", model.display());
    if external_files(&bytes).with_context(loading)?.is_empty() {
        return Ok(bytes);
    }
    let folder = render_runtime::scene::DirResources::beside(model)
        .with_context(|| format!("opening the folder of {}", model.display()))?;
    pack_glb(&bytes, &folder, &render_runtime::ImportLimits::default()).with_context(loading)
}

/// A USD stage with the layers and textures it names (sublayers, references, payloads in every
/// variant, texture files) read from its folder, as one package; a stage that names no file
/// is returned as it is. The function fetches the same files from beside the model's key.
fn bundle_usd_files(model: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let folder = render_runtime::scene::DirResources::beside(model)
        .with_context(|| format!("opening the folder of {}", model.display()))?;
    let name = model.file_name().and_then(|n| n.to_str());
    render_runtime::scene::usd_files::bundle_usd(
        name,
        bytes,
        &folder,
        &render_runtime::ImportLimits::default(),
    )
    .with_context(|| format!("loading {}", model.display()))
}

/// Runs `lightbox render` locally.
pub fn run(args: &RenderArgs) -> Result<()> {
    let plan = plan_from_args(args)?;
    let kind = ModelKind::of_path(&args.model)?;
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let (bytes, kind) = match kind {
        ModelKind::Step => (tessellate(args, &bytes)?, ModelKind::Glb),
        ModelKind::Glb => (bundle_gltf_files(&args.model, bytes)?, kind),
        ModelKind::Usd => (bundle_usd_files(&args.model, bytes)?, kind),
    };
    let mut engine = args
        .engine
        .start()
        .with_context(|| format!("starting the {} engine", args.engine))?;
    let rendered = render_with(engine.as_mut(), &bytes, kind, &[plan], &NoHooks)
        .with_context(|| format!("rendering {} with {}", args.model.display(), args.engine))?;
    let out = rendered
        .outputs
        .first()
        .context("the engine returned no output")?;
    let summary = engine.summary().unwrap_or_default();
    println!("engine       {:>8}    {summary}", args.engine);
    println!("import       {:>8.3} s", secs(rendered.import));
    println!("accel build  {:>8.3} s", secs(rendered.accel_build));
    let frames = out.images.len();
    let mrays = if out.mrays_per_s > 0.0 {
        format!(", {:.1} Mrays/s", out.mrays_per_s)
    } else {
        String::new()
    };
    println!(
        "render       {:>8.3} s  ({}x{}, {} spp, {} frame{}{mrays})",
        secs(out.timings.render),
        out.width,
        out.height,
        out.samples,
        frames,
        if frames == 1 { "" } else { "s" },
    );
    println!(
        "denoise      {:>8.3} s  ({})",
        secs(out.timings.denoise),
        out.denoiser.as_str()
    );
    println!("encode       {:>8.3} s", secs(out.timings.encode));
    write_outputs(args, out)
}

/// Tessellates a STEP model to GLB with the tessellate function's code and default parameters
/// (the ones a render job without `tessellation` uses).
fn tessellate(args: &RenderArgs, step: &[u8]) -> Result<Vec<u8>> {
    let started = Instant::now();
    let done = tessellate_step(step, &TessellationParams::default())
        .with_context(|| format!("tessellating {}", args.model.display()))?;
    println!(
        "tessellate   {:>8.3} s  ({} parts, {} instances, {} triangles)",
        secs(started.elapsed()),
        done.stats.parts,
        done.stats.instances,
        done.stats.triangles
    );
    Ok(done.glb)
}

/// Writes the still, or the turntable frames and animation, where `args.output` says.
fn write_outputs(args: &RenderArgs, out: &RenderOutput) -> Result<()> {
    let frames = out.images.len();
    if let Some(animation) = &out.animation {
        let dir = args.output.parent().unwrap_or(Path::new("."));
        let stem = args
            .output
            .file_stem()
            .and_then(|s| s.to_str())
            .context("output file name is not valid UTF-8")?;
        for (i, image) in out.images.iter().enumerate() {
            let name =
                render_runtime::turntable::frame_file_name(stem, i, image.format.extension());
            crate::write_atomically(&dir.join(name), &image.bytes)?;
        }
        let anim_path = args.output.with_extension("webp");
        crate::write_atomically(&anim_path, &animation.bytes)?;
        println!(
            "wrote {} and {} frames next to it",
            anim_path.display(),
            frames
        );
    } else {
        let image = out.images.first().context("renderer returned no image")?;
        crate::write_atomically(&args.output, &image.bytes)?;
        println!("wrote {}", args.output.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parses() {
        assert_eq!(
            "640x480".parse::<Size>().unwrap(),
            Size {
                width: 640,
                height: 480
            }
        );
        assert!("640".parse::<Size>().is_err());
        assert!("ax3".parse::<Size>().is_err());
    }

    #[test]
    fn extension_picks_format() {
        assert!(matches!(
            format_for(Path::new("a.PNG")).unwrap(),
            ImageFormat::Png { .. }
        ));
        assert!(matches!(
            format_for(Path::new("a.webp")).unwrap(),
            ImageFormat::Webp { .. }
        ));
        assert!(format_for(Path::new("a.jpg")).is_err());
    }

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        render: RenderArgs,
    }

    fn parse(args: &[&str]) -> Result<RenderArgs, clap::Error> {
        use clap::Parser as _;
        Command::try_parse_from(std::iter::once("render").chain(args.iter().copied()))
            .map(|command| command.render)
    }

    #[test]
    fn unknown_engine_is_rejected_while_parsing() {
        let err = parse(&["m.glb", "-o", "out.png", "--engine", "eevee"]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("eevee") && message.contains("available: native, cycles"),
            "{message}"
        );
        let args = parse(&["m.glb", "-o", "out.png", "--engine", "cycles"]).unwrap();
        assert_eq!(args.engine, EngineKind::Cycles);
    }

    #[test]
    fn bad_arguments_fail_before_reading_the_model() {
        // The model does not exist: each of these must fail on its own check first.
        let dir = std::env::temp_dir().join(format!("lightbox-render-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.png");
        let out = out.to_str().unwrap();
        let unsupported = spec_from_args(&parse(&["missing.obj", "-o", out]).unwrap()).unwrap_err();
        assert!(format!("{unsupported:#}").contains("supported formats: GLB/glTF"));
        let missing_folder = dir.join("no-such-folder").join("out.png");
        let err = spec_from_args(
            &parse(&["missing.glb", "-o", missing_folder.to_str().unwrap()]).unwrap(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
        let jpeg = spec_from_args(&parse(&["missing.glb", "-o", "out.jpg"]).unwrap()).unwrap_err();
        assert!(format!("{jpeg:#}").contains("must end in .png or .webp"));
        assert!(spec_from_args(&parse(&["missing.step", "-o", out]).unwrap()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
