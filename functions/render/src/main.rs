//! `lightbox-render`: serves `render.light` or `render.heavy` (`LIGHTBOX_QUEUE`) until SIGTERM.

use lightbox_render::{RenderHandler, RenderLimits};

fn main() -> anyhow::Result<()> {
    // Started as the isolated USD reader: import, hand back the scene and exit.
    lightbox_isolate::serve_child_if_requested(&[render_runtime::scene::usd_isolate::CHILD]);
    tokio::runtime::Runtime::new()?.block_on(async {
        let queue = lightbox_runtime::config::env_or("LIGHTBOX_QUEUE", "render.light");
        lightbox_runtime::worker::run(RenderHandler::new(RenderLimits::from_env(&queue))?).await
    })
}
