//! The `lightbox render` command without the rest of the CLI, for working on the renderer:
//! `cargo run -p render-runtime --example render -- MODEL -o OUT.png [--size 512x512]`.
//!
//! It compiles the CLI's own `render_cmd.rs`, so this example and `lightbox render` run the
//! same code.

use clap::Parser;

#[path = "../../cli/src/render_cmd.rs"]
mod render_cmd;

#[derive(Parser)]
#[command(about = "Render a GLB locally with the native path tracer")]
struct Cli {
    #[command(flatten)]
    args: render_cmd::RenderArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    render_cmd::run(&cli.args)
}
