//! `lightbox render MODEL -o OUT`: renders a GLB locally with the native engine and prints one
//! timing line per stage (import, accel build, render, denoise, encode).
//!
//! The output's extension picks the format (`.png` or `.webp`). With `--turntable N` the frames
//! are written next to OUT as `STEM_0001.EXT`, … and the animation as `STEM.webp`.
//!
//! `--engine cycles` renders the same spec with Blender Cycles in a worker process (Blender's
//! Python from `LIGHTBOX_BLENDER_PYTHON` or `.tools/bpy`); its start-up is printed on its own line.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use render_runtime::{
    CyclesConfig, CyclesEngine, DenoiseRequest, Engine, EngineKind, ImageFormat, ImportLimits,
    Model, NoHooks, PreparedScene, RenderOutput, RenderSpec, TurntableSpec,
};

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
    /// OIDN when compiled in, otherwise the built-in filter.
    Auto,
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

/// Render a model locally with the native path tracer.
#[derive(Clone, Debug, clap::Args)]
pub struct RenderArgs {
    /// The model to render (.glb, or .gltf with its files beside it).
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
    /// Render engine: native (this crate's path tracer) or cycles (Blender Cycles).
    #[arg(long, default_value = "native")]
    pub engine: String,
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The render spec the arguments ask for (shared by local and remote runs).
pub fn spec_from_args(args: &RenderArgs) -> Result<RenderSpec> {
    let format = format_for(&args.output)?;
    let spec = RenderSpec {
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
    };
    // Reject a bad spec before the (possibly long) import.
    spec.resolve().context("invalid render settings")?;
    Ok(spec)
}

/// Runs `lightbox render` locally with the engine `--engine` names.
pub fn run(args: &RenderArgs) -> Result<()> {
    let engine: EngineKind = args.engine.parse().context("--engine")?;
    match engine {
        EngineKind::Native => run_native(args),
        EngineKind::Cycles => run_cycles(args),
    }
}

/// `lightbox render --engine cycles`: starts a Blender worker, renders, prints the stages.
fn run_cycles(args: &RenderArgs) -> Result<()> {
    let spec = spec_from_args(args)?;
    let mut engine =
        CyclesEngine::start(CyclesConfig::from_env()).context("starting the cycles engine")?;
    if let Some(info) = engine.worker_info() {
        println!(
            "blender      {:>8.3} s  (Blender {}, device {})",
            secs(info.startup),
            info.blender,
            info.device
        );
    }
    let out = engine
        .render(Model::Path(&args.model), &spec, &NoHooks)
        .with_context(|| format!("rendering {} with cycles", args.model.display()))?;
    println!("import       {:>8.3} s", secs(out.timings.import));
    println!("sync + bvh   {:>8.3} s", secs(out.timings.accel_build));
    println!(
        "render       {:>8.3} s  ({}x{}, {} spp, {} frame{})",
        secs(out.timings.render),
        out.width,
        out.height,
        out.samples,
        out.images.len(),
        if out.images.len() == 1 { "" } else { "s" },
    );
    println!(
        "denoise      {:>8.3} s  ({})",
        secs(out.timings.denoise),
        out.denoiser.as_str()
    );
    println!("encode       {:>8.3} s", secs(out.timings.encode));
    write_outputs(args, &out)
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
    pack_glb(&bytes, &folder, &ImportLimits::default()).with_context(loading)
}

/// `lightbox render` with the native engine.
fn run_native(args: &RenderArgs) -> Result<()> {
    let spec = spec_from_args(args)?;

    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let bytes = bundle_gltf_files(&args.model, bytes)?;
    let prepared = PreparedScene::from_glb(&bytes, &ImportLimits::default())
        .with_context(|| format!("loading {}", args.model.display()))?;
    let scene = prepared.scene();
    println!(
        "import       {:>8.3} s  ({} parts, {} meshes, {} triangles)",
        secs(prepared.import_time()),
        scene.instances.len(),
        scene.meshes.len(),
        scene.instanced_triangle_count()
    );
    println!("accel build  {:>8.3} s", secs(prepared.accel_build_time()));

    let out = prepared.render(&spec, &NoHooks).context("rendering")?;
    let frames = out.images.len();
    println!(
        "render       {:>8.3} s  ({}x{}, {} spp, {} frame{}, {:.1} Mrays/s)",
        secs(out.timings.render),
        out.width,
        out.height,
        out.samples,
        frames,
        if frames == 1 { "" } else { "s" },
        out.mrays_per_s
    );
    println!(
        "denoise      {:>8.3} s  ({})",
        secs(out.timings.denoise),
        out.denoiser.as_str()
    );
    println!("encode       {:>8.3} s", secs(out.timings.encode));
    write_outputs(args, &out)
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
            let path = dir.join(name);
            std::fs::write(&path, &image.bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let anim_path = args.output.with_extension("webp");
        std::fs::write(&anim_path, &animation.bytes)
            .with_context(|| format!("writing {}", anim_path.display()))?;
        println!(
            "wrote {} and {} frames next to it",
            anim_path.display(),
            frames
        );
    } else {
        let image = out.images.first().context("renderer returned no image")?;
        std::fs::write(&args.output, &image.bytes)
            .with_context(|| format!("writing {}", args.output.display()))?;
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

    #[test]
    fn unknown_engine_is_rejected_before_rendering() {
        let args = RenderArgs {
            model: PathBuf::from("missing.glb"),
            output: PathBuf::from("out.png"),
            size: Size {
                width: 8,
                height: 8,
            },
            samples: None,
            turntable: None,
            denoise: DenoiseArg::Auto,
            seed: 0,
            remote: false,
            engine: "eevee".into(),
        };
        let err = run(&args).unwrap_err();
        assert!(format!("{err:#}").contains("eevee"), "{err:#}");
    }
}
