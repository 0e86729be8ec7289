//! The tessellate function: STEP (AP203/AP214/AP242) in, instanced binary glTF out.
//!
//! OpenCASCADE 7.6 reads the file with XCAF (names, colours, the assembly tree, units) and meshes
//! each distinct part once through a small C++ shim (`occt/shim.cpp`, the only `unsafe` code is
//! in [`ffi`]); [`scene`] turns the parts and placements into a `lightbox_scene::Scene` (one
//! mesh per part, one instance per placement, colours as materials, metres) and the scene
//! crate's one GLB writer writes it, Y-up under a root node. In the worker, OCCT runs in a child
//! process under a [`Sandbox`] (time and memory limits, cancellation; [`isolate`]), and results
//! are cached per CAD content under [`cache_key`] ([`handler`]).
//!
//! The pure core is [`tessellate_bytes`] (isolated) or [`tessellate_file`] (in this process);
//! the queue handler and `lightbox tessellate` both run it. Parameters are the wire type
//! [`TessellationParams`], checked by [`validate_params`].
//!
//! ```no_run
//! use lightbox_tessellate::{samples, tessellate_file, TessellationParams};
//!
//! let dir = std::env::temp_dir();
//! let step = dir.join("bracket.step");
//! samples::write_step(samples::Sample::Bracket, &step).unwrap();
//! let done = tessellate_file(&step, &TessellationParams::default()).unwrap();
//! assert_eq!(&done.glb[0..4], b"glTF");
//! println!("{} parts, {} triangles", done.stats.parts, done.stats.triangles);
//! ```

pub mod ffi;
pub mod handler;
pub mod isolate;
pub mod model;
pub mod samples;
pub mod scene;

use std::path::Path;
use std::time::Instant;

use lightbox_isolate::{Sandbox, SandboxError};
use lightbox_runtime::requests::TessellateRequest;
use lightbox_runtime::ObjectKey;
use serde::{Deserialize, Serialize};

pub use handler::{Limits, TessellateHandler};
pub use isolate::{run_isolated, CHILD};
/// The meshing parameters, as jobs send them (`lightbox_runtime::requests`).
pub use lightbox_runtime::requests::TessellationParams;
/// The former name of [`TessellationParams`] (the same type), until `cli/src/render_cmd.rs`
/// names it by its own name.
pub type TessellateParams = TessellationParams;

/// Part of every cache key (`lightbox_runtime::cache::TESSELLATOR_VERSION`): bump it there whenever the GLB
/// for the same input would change.
pub use lightbox_runtime::cache::TESSELLATOR_VERSION;

/// The default linear deflection, as a fraction of the model's bounding-box diagonal.
pub const DEFAULT_RELATIVE_DEFLECTION: f64 = 0.001;

/// The meshing parameters of a job request (`None` takes the defaults: a linear deflection of
/// [`DEFAULT_RELATIVE_DEFLECTION`] times the model's size, and 0.5 rad), checked.
pub fn params_from_request(
    request: &TessellateRequest,
) -> Result<TessellationParams, TessellateError> {
    let params = TessellationParams {
        linear_deflection: request.linear_deflection,
        angular_deflection: request.angular_deflection,
    };
    validate_params(&params)?;
    Ok(params)
}

/// Checks that the deflections are meshable: linear in (0, 1] m, angular in [0.01, pi/2] rad.
pub fn validate_params(params: &TessellationParams) -> Result<(), TessellateError> {
    if let Some(d) = params.linear_deflection {
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(TessellateError::Parameters {
                // `{:?}` writes 1e300 as such, where `{}` writes all 301 digits.
                reason: format!("linear_deflection {d:?} m is outside (0, 1]"),
            });
        }
    }
    if let Some(a) = params.angular_deflection {
        if !(a.is_finite() && (0.01..=std::f64::consts::FRAC_PI_2).contains(&a)) {
            return Err(TessellateError::Parameters {
                reason: format!("angular_deflection {a:?} rad is outside [0.01, pi/2]"),
            });
        }
    }
    Ok(())
}

/// The sandbox OCCT runs in under `limits`, started from `executable` (one that serves
/// [`CHILD`]).
pub fn sandbox(executable: std::path::PathBuf, limits: &Limits) -> Sandbox {
    Sandbox {
        executable,
        time_limit: limits.timeout,
        address_space: Some(limits.max_memory_bytes),
        cancel: None,
        fault_injection: false,
    }
}

/// Why a tessellation failed. Its retry class is decided in one place, the `From` impl for
/// `JobError` below: only local I/O trouble ([`TessellateError::Io`]) is retried, the rest is
/// a problem with the input or its parameters, and retrying would not help.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TessellateError {
    #[error("input is {size} bytes, over the tessellate limit of {limit} bytes")]
    InputTooLarge { size: u64, limit: u64 },
    #[error("input is not a STEP file: {reason}")]
    NotStep { reason: String },
    #[error("the STEP file is truncated: {reason}")]
    Truncated { reason: String },
    #[error("{message}")]
    NoSolids { message: String },
    #[error("could not read the STEP file: {message}")]
    Unreadable { message: String },
    #[error("OpenCASCADE failed: {message}")]
    Occt { message: String },
    #[error("tessellation ran out of memory (limit {limit_mib} MiB)")]
    OutOfMemory { limit_mib: u64 },
    #[error("tessellation timed out after {seconds} s: the STEP file is too complex or hangs OpenCASCADE")]
    TimedOut { seconds: f64 },
    #[error("the tessellator crashed ({how}; memory limit {memory_limit_mib} MiB){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Crashed {
        how: String,
        memory_limit_mib: u64,
        stderr: String,
    },
    #[error("invalid parameters: {reason}")]
    Parameters { reason: String },
    #[error("could not write the GLB: {reason}")]
    Glb { reason: String },
    /// A cache entry that [`scene::glb_counts`] cannot read.
    #[error("cached object {key} is not a GLB this function wrote")]
    NotOurGlb { key: String },
    /// The blocking task that waits for the child ended without an answer (it panicked).
    #[error("tessellation task failed: {reason}")]
    Task { reason: String },
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
    #[error("cancelled")]
    Cancelled,
}

impl TessellateError {
    /// Whether a later attempt could succeed (local I/O trouble only).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// The one place tessellate errors get their retry class.
impl From<TessellateError> for lightbox_runtime::JobError {
    fn from(err: TessellateError) -> Self {
        match err {
            TessellateError::Cancelled => lightbox_runtime::JobError::Cancelled,
            err if err.is_retryable() => lightbox_runtime::JobError::retryable(err.to_string()),
            err => lightbox_runtime::JobError::permanent(err.to_string()),
        }
    }
}

impl From<ffi::OcctError> for TessellateError {
    fn from(err: ffi::OcctError) -> Self {
        use ffi::OcctStatus;
        match err.status {
            OcctStatus::NotStep | OcctStatus::Transfer => Self::Unreadable {
                message: err.message,
            },
            OcctStatus::NoSolids => Self::NoSolids {
                message: err.message,
            },
            OcctStatus::OutOfMemory => Self::OutOfMemory { limit_mib: 0 },
            OcctStatus::Failure => Self::Occt {
                message: err.message,
            },
        }
    }
}

/// A child that gave no answer: crashed, hung, cancelled, out of memory, or never started.
impl TessellateError {
    fn from_sandbox(err: SandboxError, sandbox: &Sandbox) -> Self {
        let memory_limit_mib = sandbox.address_space.unwrap_or(0) >> 20;
        match err {
            SandboxError::Start { executable, reason } => Self::Io {
                what: format!("starting the tessellator {}", executable.display()),
                reason,
            },
            SandboxError::Io { what, reason } => Self::Io {
                what: what.to_owned(),
                reason,
            },
            SandboxError::Request(reason) => Self::Parameters { reason },
            SandboxError::TimedOut { limit } => Self::TimedOut {
                seconds: limit.as_secs_f64(),
            },
            SandboxError::Cancelled => Self::Cancelled,
            SandboxError::OutOfMemory { limit } => Self::OutOfMemory {
                limit_mib: limit.unwrap_or(0) >> 20,
            },
            SandboxError::Crashed { status, stderr } => Self::Crashed {
                how: lightbox_isolate::describe_exit(status),
                memory_limit_mib,
                stderr: lightbox_isolate::last_line(&stderr).unwrap_or_default(),
            },
            SandboxError::BadReply { reason } => Self::Crashed {
                how: format!("ended without a readable result: {reason}"),
                memory_limit_mib,
                stderr: String::new(),
            },
        }
    }
}

/// What one tessellation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct parts (meshed once each).
    pub parts: usize,
    /// Placements: nodes in the GLB.
    pub instances: usize,
    /// Triangles in the scene, counting every instance.
    pub triangles: u64,
    /// Triangles meshed and stored, counting each part once.
    pub distinct_triangles: u64,
    pub read_ms: f64,
    pub mesh_ms: f64,
    pub write_ms: f64,
    pub linear_deflection_m: f64,
    pub angular_deflection: f64,
    pub bbox_diagonal_m: f64,
    pub glb_bytes: u64,
}

/// A GLB and its stats.
#[derive(Debug, Clone, PartialEq)]
pub struct Tessellated {
    pub glb: Vec<u8>,
    pub stats: Stats,
}

const STEP_MAGIC: &[u8] = b"ISO-10303-21;";
const STEP_END: &[u8] = b"END-ISO-10303-21;";

/// Cheap checks before OCCT sees the bytes: the size limit, the STEP header and the terminator.
/// A truncated file is named by the last entity it starts.
pub fn check_step_bytes(bytes: &[u8], max_input_bytes: u64) -> Result<(), TessellateError> {
    if bytes.len() as u64 > max_input_bytes {
        return Err(TessellateError::InputTooLarge {
            size: bytes.len() as u64,
            limit: max_input_bytes,
        });
    }
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = &body[start..];
    if !body.starts_with(STEP_MAGIC) {
        let reason = if body.starts_with(&[0x1f, 0x8b]) {
            "it is gzip-compressed (decompress it first)".to_owned()
        } else if body.starts_with(b"PK\x03\x04") {
            "it is a ZIP archive".to_owned()
        } else if body.is_empty() {
            "it is empty".to_owned()
        } else {
            let shown: String = String::from_utf8_lossy(&body[..body.len().min(24)])
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect();
            format!("it does not start with ISO-10303-21; (it starts with {shown:?})")
        };
        return Err(TessellateError::NotStep { reason });
    }
    let end = body
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(0);
    if !body[..end].ends_with(STEP_END) {
        let last_entity = last_entity_id(body);
        let reason = match last_entity {
            Some(id) => format!("it ends inside or after entity #{id} without END-ISO-10303-21;"),
            None => "it ends before its DATA section, without END-ISO-10303-21;".to_owned(),
        };
        return Err(TessellateError::Truncated { reason });
    }
    Ok(())
}

/// The id of the last `#N=` entity instance in a STEP file.
fn last_entity_id(body: &[u8]) -> Option<u64> {
    let mut at = body.len();
    while let Some(hash) = body[..at].iter().rposition(|&b| b == b'#') {
        let digits: Vec<u8> = body[hash + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        let after = body[hash + 1 + digits.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        let at_line_start = body[..hash]
            .iter()
            .rev()
            .find(|b| **b != b' ' && **b != b'\t')
            .is_none_or(|b| *b == b'\n' || *b == b'\r' || *b == b';');
        if !digits.is_empty() && after == Some(&b'=') && at_line_start {
            return std::str::from_utf8(&digits).ok()?.parse().ok();
        }
        at = hash;
    }
    None
}

/// The content-derived cache key, `cache/tessellate/<sha256>.glb`: sha256 of the STEP bytes, the
/// parameters and the tessellator version. It is `lightbox_runtime::cache::tessellation_key`, so other
/// functions (render) find the GLB without asking for a tessellation.
pub fn cache_key(step: &[u8], params: &TessellationParams) -> ObjectKey {
    lightbox_runtime::cache::tessellation_key(step, params)
}

/// Reads, meshes and writes in this process (the child process runs this). Prefer
/// [`tessellate_bytes`], which isolates OCCT.
pub fn tessellate_file(
    step: &Path,
    params: &TessellationParams,
) -> Result<Tessellated, TessellateError> {
    validate_params(params)?;
    let model = ffi::read_and_mesh(
        step,
        params.linear_deflection,
        DEFAULT_RELATIVE_DEFLECTION,
        params.angular_deflection,
    )?;
    let write_start = Instant::now();
    let glb = scene::write_glb(
        &model,
        &format!("lightbox-tessellate {}", TESSELLATOR_VERSION),
    )?;
    let stats = Stats {
        parts: model.parts.len(),
        instances: model.placements.len(),
        triangles: model.instanced_triangles() as u64,
        distinct_triangles: model.distinct_triangles() as u64,
        read_ms: model.read_ms,
        mesh_ms: model.mesh_ms,
        write_ms: write_start.elapsed().as_secs_f64() * 1000.0,
        linear_deflection_m: model.linear_deflection_m,
        angular_deflection: model.angular_deflection,
        bbox_diagonal_m: model.bbox_diagonal_m,
        glb_bytes: glb.len() as u64,
    };
    Ok(Tessellated { glb, stats })
}

/// The pure core: checks the bytes, then reads, meshes and writes in a child process under
/// `sandbox` (its time and memory limits, its cancel flag; see [`sandbox`]).
pub fn tessellate_bytes(
    step: &[u8],
    params: &TessellationParams,
    max_input_bytes: u64,
    sandbox: &Sandbox,
) -> Result<Tessellated, TessellateError> {
    validate_params(params)?;
    check_step_bytes(step, max_input_bytes)?;
    let (glb, stats) = run_isolated(step, params, sandbox)?;
    Ok(Tessellated { glb, stats })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{self, Sample};

    fn sample_file(sample: Sample) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "lightbox-tess-unit-{}-{}.step",
            sample.name(),
            std::process::id()
        ));
        samples::write_step(sample, &path).unwrap();
        path
    }

    #[test]
    fn every_sample_tessellates_to_a_glb() {
        for sample in [
            Sample::Bracket,
            Sample::Flange,
            Sample::Duct,
            Sample::Bearing,
        ] {
            let path = sample_file(sample);
            let bytes = std::fs::read(&path).unwrap();
            check_step_bytes(&bytes, u64::MAX).unwrap();
            let start = Instant::now();
            let done = tessellate_file(&path, &TessellationParams::default()).unwrap();
            eprintln!("{sample:?}: {:?} in {:?}", done.stats, start.elapsed());
            assert_eq!(&done.glb[0..4], b"glTF");
            assert!(done.stats.triangles > 100, "{sample:?}");
            let _ = std::fs::remove_file(&path);
        }
    }
}
