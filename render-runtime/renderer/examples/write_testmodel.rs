//! Writes a procedural test model as GLB: `write_testmodel bearing|primitives OUT.glb [DETAIL]`.

use anyhow::{bail, Context};
use lightbox_testmodels as testmodels;
use render_runtime::scene::export::export_glb;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(out)) = (args.get(1), args.get(2)) else {
        bail!("usage: write_testmodel bearing|primitives OUT.glb [DETAIL]");
    };
    let detail: f32 = match args.get(3) {
        Some(d) => d.parse().context("DETAIL must be a number")?,
        None => 1.0,
    };
    let bytes = match kind.as_str() {
        "bearing" => testmodels::bearing_glb(detail),
        "primitives" => export_glb(&testmodels::primitives_scene()),
        other => bail!("unknown model {other:?}"),
    };
    std::fs::write(out, &bytes).with_context(|| format!("writing {out}"))?;
    println!("wrote {out} ({} bytes)", bytes.len());
    Ok(())
}
