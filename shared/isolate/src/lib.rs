//! One child-process sandbox for the parsers that must not take a worker down with them:
//! openusd (which trusts the sizes a file declares) and OpenCASCADE (which can crash or hang on
//! a bad STEP file). The work runs in a child started from the same executable with a hidden
//! first argument ([`CHILD_ARG`]), under the limits of a [`Sandbox`] value the caller passes:
//! a wall-clock limit, an address-space limit the child sets on itself (`RLIMIT_AS`),
//! cancellation, and fault injection for tests. A crash, hang or runaway allocation fails one
//! call with a [`SandboxError`]; the child dies with its parent (`PR_SET_PDEATHSIG`).
//!
//! A child is an [`Entry`]: a name and the function the child runs. An executable serves the
//! entries it lists in one call first thing in `main`, [`serve_child_if_requested`]; the parent
//! side starts the same entry with [`Sandbox::run`], which passes a typed request (JSON) and the
//! input bytes, and gets back the child's typed report (so errors keep their kind across the
//! process boundary) and its output bytes.
//!
//! ```no_run
//! use std::time::Duration;
//! use lightbox_isolate::{ChildCall, ChildReply, Entry, Sandbox};
//!
//! /// Counts the input's bytes in a child process.
//! const COUNT: Entry = Entry { name: "count", main: count };
//!
//! fn count(call: &ChildCall) -> Result<ChildReply, String> {
//!     let factor: u64 = call.request().map_err(|err| err.to_string())?;
//!     let input = call.read_input().map_err(|err| err.to_string())?;
//!     Ok(ChildReply::new(&(input.len() as u64 * factor), Vec::new()))
//! }
//!
//! fn main() {
//!     // In the child this runs the entry and exits; in the parent it returns at once.
//!     lightbox_isolate::serve_child_if_requested(&[COUNT]);
//!     let sandbox = Sandbox::current_exe(Duration::from_secs(10), Some(1 << 30)).unwrap();
//!     let reply = sandbox.run::<u64, u64>(&COUNT, &2, b"four").unwrap();
//!     assert_eq!(reply.report, 8);
//! }
//! ```
//!
//! The child's thread of the parent waits for it, so the death signal (sent when the thread
//! that started the child ends) fires only when the parent is gone.

#![deny(unsafe_code)]

mod child;
mod fault;
mod sandbox;
mod sys;

pub use child::{serve_child_if_requested, serves, ChildCall, ChildReply, Entry, CHILD_ARG};
pub use fault::{Fault, FAULT_MARKER};
pub use sandbox::{describe_exit, last_line, Reply, Sandbox, SandboxError};

/// Exit status of a child whose allocation was refused by its address-space limit and that
/// said so (the `alloc` fault does; an entry may too, see [`ChildCall::out_of_memory`]).
pub const OUT_OF_MEMORY_STATUS: i32 = 75;
