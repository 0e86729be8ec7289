//! `lightbox-tessellate`: serves the `tessellate` queue until SIGTERM. The same executable is the
//! OCCT child process (see `lightbox_tessellate::isolate`), so that check comes first.

fn main() -> anyhow::Result<()> {
    lightbox_isolate::serve_child_if_requested(&[lightbox_tessellate::CHILD]);
    let handler = lightbox_tessellate::TessellateHandler::from_env()?;
    tokio::runtime::Runtime::new()?.block_on(lightbox_runtime::worker::run(handler))
}
