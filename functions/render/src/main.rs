//! `lightbox-render`: serves `render.light` or `render.heavy` (`LIGHTBOX_QUEUE`) until SIGTERM.

use lightbox_render::{RenderHandler, RenderLimits};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queue = shared::config::env_or("LIGHTBOX_QUEUE", "render.light");
    shared::worker::run(RenderHandler::new(RenderLimits::from_env(&queue))).await
}
