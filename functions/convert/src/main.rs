//! `lightbox-convert`: serves the `convert` queue until SIGTERM.

use lightbox_convert::{ConvertHandler, Limits};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::worker::run(ConvertHandler {
        limits: Limits::from_env(),
    })
    .await
}
