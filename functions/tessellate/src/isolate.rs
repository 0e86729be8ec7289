//! OCCT runs in a child process ([`lightbox_isolate`]): a crash, a hang or a runaway allocation
//! in the CAD kernel fails one job, never the worker. The child is the entry [`CHILD`]; every
//! binary that tessellates lists it first thing in `main`:
//!
//! ```no_run
//! // First thing in `main`: in the child this runs the entry and exits.
//! lightbox_isolate::serve_child_if_requested(&[lightbox_tessellate::CHILD]);
//! ```
//!
//! The parent hands over the STEP bytes and the parameters; the child, under the sandbox's
//! address-space limit, reads, meshes and writes the GLB, and reports its stats or its
//! [`TessellateError`] (which keeps its variant across the boundary). The sandbox kills the
//! child when its time limit passes or the job is cancelled.

use lightbox_isolate::{ChildCall, ChildReply, Entry, Sandbox};

use crate::{tessellate_file, Stats, TessellateError, TessellationParams};

/// The OCCT child.
pub const CHILD: Entry = Entry {
    name: "tessellate",
    main: child_main,
};

/// Runs one tessellation in a child process under `sandbox`.
pub fn run_isolated(
    step: &[u8],
    params: &TessellationParams,
    sandbox: &Sandbox,
) -> Result<(Vec<u8>, Stats), TessellateError> {
    let reply = sandbox
        .run::<TessellationParams, Result<Stats, TessellateError>>(&CHILD, params, step)
        .map_err(|err| TessellateError::from_sandbox(err, sandbox))?;
    let stats = reply.report?;
    Ok((reply.output, stats))
}

fn child_main(call: &ChildCall) -> Result<ChildReply, String> {
    let params: TessellationParams = call.request().map_err(|err| err.to_string())?;
    let limit_mib = call.address_space().unwrap_or(0) >> 20;
    Ok(match tessellate_file(&call.input_path(), &params) {
        Ok(done) => ChildReply::new(&Ok::<Stats, TessellateError>(done.stats), done.glb),
        // OCCT does not know the limit it ran into; the child does.
        Err(TessellateError::OutOfMemory { .. }) => ChildReply::new(
            &Err::<Stats, _>(TessellateError::OutOfMemory { limit_mib }),
            Vec::new(),
        ),
        Err(error) => ChildReply::new(&Err::<Stats, _>(error), Vec::new()),
    })
}
