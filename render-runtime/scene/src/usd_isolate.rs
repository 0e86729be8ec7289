//! USD import in a child process. openusd 0.6 trusts the counts a binary file declares and
//! allocates for them before reading (`cargo fuzz` found a 40-byte change that asks for 160 GB
//! and aborts the process). [`usdc_guard`](super::usdc_guard) refuses such claims in the file's
//! tables, but values deeper in the file can make the same claims; so workers import USD in a
//! child with an address-space limit, and a runaway allocation, panic or hang fails one job.
//!
//! The child is an executable that calls [`serve_child_if_requested`] first thing in `main` (the
//! function binaries do; `lightbox-usd-import` is a bare one). It reads the USD bytes from stdin,
//! imports them under the limits given as arguments and writes the scene to stdout as GLB (which
//! carries everything the importer produces), or the error text with exit status 3.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::export::export_glb;
use super::gltf::{import_gltf_with_limits, ImportLimits};
use super::usd::{import_usd_with_limits, UsdImportError};
use super::Scene;

/// The hidden first argument that makes an executable the USD import child.
pub const CHILD_ARG: &str = "__lightbox-usd-import-child";

/// Address space the child needs besides the scene: its own code, libraries and stacks.
const CHILD_BASE_BYTES: u64 = 2 << 30;
/// Exit status of a child that imported nothing and wrote the error to stdout.
const IMPORT_ERROR_STATUS: i32 = 3;

fn limits_to_args(limits: &ImportLimits) -> Vec<String> {
    [
        limits.max_instanced_triangles as u64,
        limits.max_unique_triangles as u64,
        limits.max_vertices_per_accessor as u64,
        limits.max_instances as u64,
        limits.max_node_depth as u64,
        limits.max_texture_pixels,
        limits.memory_budget,
    ]
    .iter()
    .map(u64::to_string)
    .collect()
}

fn limits_from_args(args: &[String]) -> Option<ImportLimits> {
    let n: Vec<u64> = args.iter().map(|a| a.parse().ok()).collect::<Option<_>>()?;
    let [a, b, c, d, e, f, g] = n.as_slice() else {
        return None;
    };
    Some(ImportLimits {
        max_instanced_triangles: *a as usize,
        max_unique_triangles: *b as usize,
        max_vertices_per_accessor: *c as usize,
        max_instances: *d as usize,
        max_node_depth: *e as usize,
        max_texture_pixels: *f,
        memory_budget: *g,
    })
}

/// The executable that serves the child, once this process has said it can (see
/// [`serve_child_if_requested`]). Unset, USD is imported in-process (library users, tests).
static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// Longest a USD file may take to read in the child before it is killed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// If this process was started as the USD import child, imports stdin to stdout and exits.
/// Otherwise returns at once, and from then on [`import_usd`] runs in a child started from this
/// executable. Binaries call it first thing in `main`.
pub fn serve_child_if_requested() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        if let Ok(exe) = std::env::current_exe() {
            let _ = HELPER.set(exe);
        }
        return;
    }
    let Some(limits) = limits_from_args(&args[2..]) else {
        eprintln!("usage: {CHILD_ARG} <seven import limits>");
        std::process::exit(2);
    };
    let memory = limits.memory_budget.saturating_add(CHILD_BASE_BYTES);
    if let Err(err) = rlimit::setrlimit(rlimit::Resource::AS, memory, memory) {
        eprintln!("cannot limit the child's address space: {err}");
        std::process::exit(2);
    }
    let mut bytes = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("cannot read the model: {err}");
        std::process::exit(2);
    }
    let mut stdout = std::io::stdout().lock();
    let status = match import_usd_with_limits(&bytes, &limits) {
        Ok(scene) => {
            let _ = stdout.write_all(&export_glb(&scene));
            0
        }
        Err(err) => {
            let _ = stdout.write_all(err.to_string().as_bytes());
            IMPORT_ERROR_STATUS
        }
    };
    let _ = stdout.flush();
    std::process::exit(status);
}

/// Imports USD bytes: in a child process when this executable serves one (the function
/// binaries), else in-process.
pub fn import_usd(bytes: &[u8], limits: &ImportLimits) -> Result<Scene, UsdImportError> {
    match HELPER.get() {
        Some(helper) => import_usd_isolated(bytes, limits, helper, READ_TIMEOUT),
        None => import_usd_with_limits(bytes, limits),
    }
}

/// Imports USD bytes in a child process started from `helper` (an executable that calls
/// [`serve_child_if_requested`]), limited to the memory budget plus its own needs and to
/// `timeout`. Errors read like [`import_usd_with_limits`]'s.
pub fn import_usd_isolated(
    bytes: &[u8],
    limits: &ImportLimits,
    helper: &Path,
    timeout: Duration,
) -> Result<Scene, UsdImportError> {
    let failed = |reason: String| UsdImportError::Open { reason };
    let mut child = Command::new(helper)
        .arg(CHILD_ARG)
        .args(limits_to_args(limits))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            failed(format!(
                "cannot start the USD reader {}: {err}",
                helper.display()
            ))
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that fails early closes its end; the write error changes nothing.
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(err) => return Err(failed(format!("lost the USD reader: {err}"))),
        }
    };
    let _ = writer.join();
    let output = reader.join().unwrap_or_default();
    let log = err_reader.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(failed(format!(
            "the USD reader did not finish within {} s",
            timeout.as_secs()
        )));
    };
    match status.code() {
        Some(0) => import_gltf_with_limits(&output, limits).map_err(|err| {
            failed(format!(
                "the USD reader's scene could not be read back: {err}"
            ))
        }),
        Some(IMPORT_ERROR_STATUS) => Err(UsdImportError::Reader {
            message: String::from_utf8_lossy(&output).into_owned(),
        }),
        _ => {
            // Rust's allocation-failure message names the size asked for.
            let last_line = log
                .lines()
                .find(|l| l.starts_with("memory allocation of"))
                .unwrap_or("")
                .trim()
                .to_owned();
            Err(failed(format!(
                "the USD reader stopped ({status}) within its memory limit of {} MiB: the file is corrupt or declares more than it holds{}",
                limits.memory_budget.saturating_add(CHILD_BASE_BYTES) >> 20,
                if last_line.is_empty() { String::new() } else { format!(" ({last_line})") }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_survive_the_command_line() {
        let limits = ImportLimits {
            max_instances: 7,
            memory_budget: 123 << 20,
            ..ImportLimits::default()
        };
        assert_eq!(limits_from_args(&limits_to_args(&limits)), Some(limits));
        assert_eq!(limits_from_args(&["1".into()]), None);
    }
}
