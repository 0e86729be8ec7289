//! `lightbox tessellate IN.step -o OUT.glb [--deflection D] [--angle A]`: runs the tessellate
//! function's own core locally (OCCT in a child process with the function's limits) and prints
//! one result line.
//!
//! The child is the `lightbox-tessellate` binary next to this executable (or
//! `LIGHTBOX_TESSELLATE_HELPER`); without one, this executable itself, which then serves
//! `lightbox_tessellate::CHILD` first thing in `main`.

use std::path::PathBuf;

use anyhow::Context as _;
use lightbox_tessellate::{tessellate_bytes, Limits, TessellationParams};

#[derive(clap::Args, Debug, Clone)]
pub struct TessellateArgs {
    /// The STEP file (AP203, AP214 or AP242).
    pub input: PathBuf,
    /// Where to write the GLB.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Linear deflection in metres (default: 0.1 % of the model's bounding-box diagonal).
    #[arg(long)]
    pub deflection: Option<f64>,
    /// Angular deflection in radians (default 0.5).
    #[arg(long)]
    pub angle: Option<f64>,
}

/// The executable that runs OCCT in the child process.
fn helper() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LIGHTBOX_TESSELLATE_HELPER") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let sibling = exe.with_file_name("lightbox-tessellate");
    Ok(if sibling.exists() { sibling } else { exe })
}

/// Tessellates STEP bytes the way the tessellate function does (OCCT in a child process under
/// the function's limits); `lightbox tessellate` and `lightbox render` of a STEP file call it.
pub fn tessellate_step(
    step: &[u8],
    params: &TessellationParams,
) -> anyhow::Result<lightbox_tessellate::Tessellated> {
    let limits = Limits::from_env();
    let sandbox = lightbox_tessellate::sandbox(helper()?, &limits);
    Ok(tessellate_bytes(
        step,
        params,
        limits.max_input_bytes,
        &sandbox,
    )?)
}

pub fn run(args: &TessellateArgs) -> anyhow::Result<()> {
    let step =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let params = TessellationParams {
        linear_deflection: args.deflection,
        angular_deflection: args.angle,
    };
    let done = tessellate_step(&step, &params)
        .with_context(|| format!("tessellating {}", args.input.display()))?;
    std::fs::write(&args.output, &done.glb)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let s = &done.stats;
    println!(
        "{}: {} parts, {} instances, {} triangles, read {:.0} ms, mesh {:.0} ms, write {:.0} ms, {} bytes (deflection {:.3} mm, {:.2} rad)",
        args.output.display(),
        s.parts,
        s.instances,
        s.triangles,
        s.read_ms,
        s.mesh_ms,
        s.write_ms,
        s.glb_bytes,
        s.linear_deflection_m * 1000.0,
        s.angular_deflection
    );
    Ok(())
}
