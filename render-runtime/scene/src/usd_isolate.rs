//! USD import in a child process. openusd 0.6 trusts the counts a binary file declares and
//! allocates for them before reading (`cargo fuzz` found a 40-byte change that asks for 160 GB
//! and aborts the process). [`usdc_guard`](super::usdc_guard) refuses such claims in the file's
//! tables, but values deeper in the file can make the same claims; so workers import USD in a
//! child with an address-space limit ([`lightbox_isolate`]), and a runaway allocation, panic or
//! hang fails one job.
//!
//! The child is the entry [`CHILD`], served by executables that list it first thing in `main`:
//!
//! ```no_run
//! // First thing in `main`: in the child this runs the entry and exits.
//! lightbox_isolate::serve_child_if_requested(&[lightbox_scene::usd_isolate::CHILD]);
//! ```
//!
//! (the function binaries and the CLI do; `lightbox-usd-import` is a bare one). The child imports
//! the bytes under the caller's [`ImportLimits`] and hands back the scene as GLB (which carries
//! everything the importer produces) or the [`UsdImportError`] itself: its variant crosses the
//! process boundary, so the parent gets the same typed error an in-process import gives.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use lightbox_isolate::{ChildCall, ChildReply, Entry, Sandbox, SandboxError};
use serde::{Deserialize, Serialize};

use super::budget::OverBudget;
use super::export::export_glb;
use super::gltf::{import_gltf_with_limits, ImportLimits};
use super::usd::{import_usd_with_limits, UsdImportError};
use super::Scene;

/// The USD import child.
pub const CHILD: Entry = Entry {
    name: "usd-import",
    main: child_main,
};

/// Address space the child needs besides the scene: its own code, libraries and stacks.
const CHILD_BASE_BYTES: u64 = 2 << 30;

/// Longest a USD file may take to read in the child before it is killed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The sandbox the USD reader runs in: `executable` (one that serves [`CHILD`]), the read
/// timeout, and an address space of the memory budget plus what the reader itself needs.
pub fn sandbox(executable: PathBuf, limits: &ImportLimits) -> Sandbox {
    Sandbox {
        executable,
        time_limit: READ_TIMEOUT,
        address_space: Some(limits.memory_budget.saturating_add(CHILD_BASE_BYTES)),
        cancel: None,
        fault_injection: false,
    }
}

/// Imports USD bytes: in a child of this executable when it serves [`CHILD`] (the function
/// binaries), else in-process (library users, tests).
pub fn import_usd(bytes: &[u8], limits: &ImportLimits) -> Result<Scene, UsdImportError> {
    if !lightbox_isolate::serves(&CHILD) {
        return import_usd_with_limits(bytes, limits);
    }
    match std::env::current_exe() {
        Ok(executable) => import_usd_isolated(bytes, limits, &sandbox(executable, limits)),
        Err(err) => Err(UsdImportError::Open {
            reason: format!("cannot find this executable to start the USD reader: {err}"),
        }),
    }
}

/// Imports USD bytes in a child process under `sandbox` (see [`sandbox`]). Errors are the ones
/// [`import_usd_with_limits`] gives, plus [`UsdImportError::Open`] for a reader that crashed,
/// hung or could not start.
pub fn import_usd_isolated(
    bytes: &[u8],
    limits: &ImportLimits,
    sandbox: &Sandbox,
) -> Result<Scene, UsdImportError> {
    let reply = sandbox
        .run::<WireLimits, Result<(), WireError>>(&CHILD, &WireLimits(*limits), bytes)
        .map_err(|err| UsdImportError::Open {
            reason: reader_failure(&err, sandbox),
        })?;
    reply.report.map_err(|WireError(err)| err)?;
    import_gltf_with_limits(&reply.output, limits).map_err(|err| UsdImportError::Open {
        reason: format!("the USD reader's scene could not be read back: {err}"),
    })
}

/// Why the reader produced nothing, in the words the bad-input corpus pins.
fn reader_failure(err: &SandboxError, sandbox: &Sandbox) -> String {
    let limit = match sandbox.address_space {
        Some(bytes) => format!(" within its memory limit of {} MiB", bytes >> 20),
        None => String::new(),
    };
    match err {
        SandboxError::Start { executable, reason } => format!(
            "cannot start the USD reader {}: {reason}",
            executable.display()
        ),
        SandboxError::TimedOut { limit } => format!(
            "the USD reader did not finish within {} s",
            limit.as_secs()
        ),
        SandboxError::Cancelled => "the USD read was cancelled".into(),
        SandboxError::OutOfMemory { .. } => format!(
            "the USD reader ran out of memory{limit}: the file is corrupt or declares more than it holds"
        ),
        SandboxError::Crashed { status, stderr } => {
            // Rust's allocation-failure message names the size asked for.
            let allocation = stderr
                .lines()
                .find(|l| l.starts_with("memory allocation of"))
                .map(|l| format!(" ({})", l.trim()))
                .unwrap_or_default();
            format!(
                "the USD reader stopped ({status}){limit}: the file is corrupt or declares more than it holds{allocation}"
            )
        }
        SandboxError::Request(_) | SandboxError::Io { .. } | SandboxError::BadReply { .. } => {
            format!("the USD reader failed: {err}")
        }
    }
}

fn child_main(call: &ChildCall) -> Result<ChildReply, String> {
    let WireLimits(limits) = call.request().map_err(|err| err.to_string())?;
    let bytes = call
        .read_input()
        .map_err(|err| format!("cannot read the model: {err}"))?;
    Ok(match import_usd_with_limits(&bytes, &limits) {
        Ok(scene) => ChildReply::new(&Ok::<(), WireError>(()), export_glb(&scene)),
        Err(err) => ChildReply::new(&Err::<(), _>(WireError(err)), Vec::new()),
    })
}

/// [`ImportLimits`] as the child receives them.
#[derive(Serialize, Deserialize)]
struct WireLimits(#[serde(with = "ImportLimitsDef")] ImportLimits);

/// [`UsdImportError`] as the child sends it: the variant and its fields, so the parent rebuilds
/// the same error (the same kind and the same message).
#[derive(Debug, Serialize, Deserialize)]
struct WireError(#[serde(with = "UsdImportErrorDef")] UsdImportError);

// Serde mirrors of the scene's types (which stay serde-free): the derives fail to compile when a
// field or variant is added there and not here.

#[derive(Serialize, Deserialize)]
#[serde(remote = "ImportLimits")]
struct ImportLimitsDef {
    max_instanced_triangles: usize,
    max_unique_triangles: usize,
    max_vertices_per_accessor: usize,
    max_instances: usize,
    max_node_depth: usize,
    max_texture_pixels: u64,
    memory_budget: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "OverBudget")]
struct OverBudgetDef {
    needed: u64,
    geometry: u64,
    acceleration: u64,
    textures: u64,
    budget: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "UsdImportError", tag = "kind", rename_all = "snake_case")]
enum UsdImportErrorDef {
    NotUsd {
        reason: String,
    },
    Open {
        reason: String,
    },
    Prim {
        prim: String,
        reason: String,
    },
    Composition {
        reason: String,
    },
    TooLarge {
        #[serde(deserialize_with = "deserialize_name")]
        what: StaticName,
        count: u64,
        limit: u64,
    },
    OverBudget(#[serde(with = "OverBudgetDef")] OverBudget),
    Reader {
        message: String,
    },
    Empty,
}

/// `&'static str` behind an alias: serde's derive reads lifetimes off the field's spelling and
/// would otherwise borrow the name from the input.
type StaticName = &'static str;

fn deserialize_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<&'static str, D::Error> {
    String::deserialize(deserializer).map(intern)
}

/// `UsdImportError::TooLarge` names what is too large with a `&'static str`. The child's names
/// are the importer's literals, a short fixed list, so each is leaked once per process at most.
fn intern(text: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(name) = names.get(text.as_str()) {
        return name;
    }
    let name: &'static str = Box::leak(text.into_boxed_str());
    names.insert(name);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_survive_the_process_boundary() {
        let limits = ImportLimits {
            max_instances: 7,
            memory_budget: 123 << 20,
            ..ImportLimits::default()
        };
        let WireLimits(back) =
            serde_json::from_slice(&serde_json::to_vec(&WireLimits(limits)).unwrap()).unwrap();
        assert_eq!(back, limits);
    }

    #[test]
    fn every_error_keeps_its_kind_and_message_across_the_boundary() {
        let errors = [
            UsdImportError::NotUsd {
                reason: "no magic".into(),
            },
            UsdImportError::Open {
                reason: "bad layer".into(),
            },
            UsdImportError::Prim {
                prim: "/World/Mesh".into(),
                reason: "faceVertexIndices[2] = 99 is out of range for 3 points".into(),
            },
            UsdImportError::Composition {
                reason: "unresolved reference".into(),
            },
            UsdImportError::TooLarge {
                what: "instances",
                count: 10,
                limit: 5,
            },
            UsdImportError::OverBudget(OverBudget {
                needed: 5 << 30,
                geometry: 3 << 30,
                acceleration: 2 << 30,
                textures: 0,
                budget: 4 << 30,
            }),
            UsdImportError::Reader {
                message: "text".into(),
            },
            UsdImportError::Empty,
        ];
        for err in errors {
            let message = err.to_string();
            let kind = std::mem::discriminant(&err);
            let sent = serde_json::to_vec(&WireError(err)).unwrap();
            let WireError(back) = serde_json::from_slice(&sent).unwrap();
            assert_eq!(std::mem::discriminant(&back), kind, "{message}");
            assert_eq!(back.to_string(), message);
        }
    }

    #[test]
    fn names_are_interned_once() {
        let a = intern("mesh points".to_owned());
        let b = intern("mesh points".to_owned());
        assert!(std::ptr::eq(a, b));
    }
}
