//! `lightbox-convert`: serves the `convert` queue until SIGTERM.

use lightbox_convert::{ConvertHandler, Limits};

fn main() -> anyhow::Result<()> {
    // Started as the isolated USD reader (GLB ⇄ USD conversions): import and exit.
    lightbox_isolate::serve_child_if_requested(&[lightbox_scene::usd_isolate::CHILD]);
    tokio::runtime::Runtime::new()?.block_on(lightbox_runtime::worker::run(ConvertHandler {
        limits: Limits::from_env(),
    }))
}
