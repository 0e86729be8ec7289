//! The child side: entries, what an entry is given and what it answers, and
//! [`serve_child_if_requested`], which runs the requested entry and exits.
//!
//! The parent starts `EXE CHILD_ARG NAME PARENT_PID ADDRESS_SPACE FAULT SCRATCH` with stdin and
//! stdout closed and stderr piped. `SCRATCH` is a directory the parent made and removes: it
//! holds `request.json` and `input`; the child writes `output` and then `reply.json`, and exits
//! with status 0. Files rather than pipes, because the C++ libraries the children run may print
//! to stdout.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fault::Fault;
use crate::OUT_OF_MEMORY_STATUS;

/// The hidden first argument that turns an executable into a sandboxed child.
pub const CHILD_ARG: &str = "__lightbox-isolated-child";

pub(crate) const REQUEST_FILE: &str = "request.json";
pub(crate) const INPUT_FILE: &str = "input";
pub(crate) const OUTPUT_FILE: &str = "output";
pub(crate) const REPLY_FILE: &str = "reply.json";

/// Exit status of a child that could not start its entry (bad arguments, unknown entry, limits
/// it could not set, a request it could not read); the reason is on stderr.
const SETUP_FAILED_STATUS: i32 = 2;

/// Work that runs in a child process: the name the parent asks for and the function the child
/// runs. An `Err` is a broken call (a request the entry cannot read), not a failure of the work:
/// the work's own errors belong in the report, where they keep their type.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub name: &'static str,
    pub main: fn(&ChildCall) -> Result<ChildReply, String>,
}

/// What the child's entry is given.
#[derive(Debug)]
pub struct ChildCall {
    request: Vec<u8>,
    scratch: PathBuf,
    address_space: Option<u64>,
}

impl ChildCall {
    /// The request the parent passed to [`crate::Sandbox::run`].
    pub fn request<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.request)
    }

    /// The input bytes, as a file (for libraries that read paths).
    pub fn input_path(&self) -> PathBuf {
        self.scratch.join(INPUT_FILE)
    }

    /// The input bytes.
    pub fn read_input(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.input_path())
    }

    /// A directory for the child's own files; the parent removes it after the call.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// The address-space limit the child runs under, in bytes.
    pub fn address_space(&self) -> Option<u64> {
        self.address_space
    }

    /// Ends the child as out of memory; the parent reports
    /// [`crate::SandboxError::OutOfMemory`].
    pub fn out_of_memory(&self) -> ! {
        std::process::exit(OUT_OF_MEMORY_STATUS)
    }
}

/// What the child's entry answers: a report (any serde type, typically a `Result` whose error
/// is the work's typed error) and output bytes.
#[derive(Debug)]
pub struct ChildReply {
    report: Vec<u8>,
    output: Vec<u8>,
}

impl ChildReply {
    pub fn new<T: Serialize>(report: &T, output: Vec<u8>) -> Self {
        Self {
            // A derived Serialize with string keys always serialises.
            report: serde_json::to_vec(report).expect("a child report serialises"),
            output,
        }
    }
}

/// Names of the entries this executable serves (see [`serves`]).
static SERVED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// If this process was started as a child for one of `entries`, runs it and exits. Otherwise
/// records that this executable serves them ([`serves`]) and returns at once. Call it first
/// thing in `main`, once, with every entry the executable serves.
pub fn serve_child_if_requested(entries: &[Entry]) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        let mut served = SERVED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        served.extend(entries.iter().map(|entry| entry.name));
        return;
    }
    let status = match run_child(&args[2..], entries) {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("{CHILD_ARG}: {reason}");
            SETUP_FAILED_STATUS
        }
    };
    std::process::exit(status);
}

/// Whether this executable said it serves `entry` (through [`serve_child_if_requested`]), so
/// [`crate::Sandbox::current_exe`] can run it.
pub fn serves(entry: &Entry) -> bool {
    SERVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(&entry.name)
}

fn run_child(args: &[String], entries: &[Entry]) -> Result<(), String> {
    let [name, parent, address_space, fault, scratch] = args else {
        return Err("usage: NAME PARENT_PID ADDRESS_SPACE FAULT SCRATCH".into());
    };
    let entry = entries
        .iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| format!("this executable serves no child {name:?}"))?;
    // Die with the parent; if it is already gone, stop here.
    crate::sys::die_with_parent();
    let parent: u32 = parent
        .parse()
        .map_err(|_| format!("bad parent id {parent:?}"))?;
    if std::os::unix::process::parent_id() != parent {
        return Err("the parent is gone".into());
    }
    let address_space = match address_space.as_str() {
        "none" => None,
        bytes => Some(
            bytes
                .parse::<u64>()
                .map_err(|_| format!("bad address-space limit {bytes:?}"))?,
        ),
    };
    if let Some(bytes) = address_space {
        rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes)
            .map_err(|err| format!("cannot limit the address space to {bytes} bytes: {err}"))?;
    }
    match fault.as_str() {
        "none" => {}
        other => {
            run_fault(Fault::from_name(other).ok_or_else(|| format!("unknown fault {other:?}"))?)
        }
    }
    let scratch = PathBuf::from(scratch);
    let request = std::fs::read(scratch.join(REQUEST_FILE))
        .map_err(|err| format!("cannot read the request: {err}"))?;
    let call = ChildCall {
        request,
        scratch,
        address_space,
    };
    let reply = (entry.main)(&call)?;
    // The output first: a reply file means the call is complete.
    std::fs::write(call.scratch.join(OUTPUT_FILE), &reply.output)
        .map_err(|err| format!("cannot write the output: {err}"))?;
    std::fs::write(call.scratch.join(REPLY_FILE), &reply.report)
        .map_err(|err| format!("cannot write the reply: {err}"))?;
    Ok(())
}

/// Misbehaves as asked (tests only). Returns only for faults that do not end the child.
fn run_fault(fault: Fault) {
    match fault {
        Fault::Crash => std::process::abort(),
        Fault::Hang => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        Fault::Alloc => {
            // Reserves address space until the limit refuses: shows that the limit holds.
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = Vec::new();
                if block.try_reserve_exact(64 << 20).is_err() {
                    drop(blocks);
                    std::process::exit(OUT_OF_MEMORY_STATUS);
                }
                blocks.push(block);
            }
        }
    }
}
