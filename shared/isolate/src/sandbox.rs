//! The parent side: [`Sandbox`], the settings of one call, and [`Sandbox::run`].

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::{Entry, CHILD_ARG, INPUT_FILE, OUTPUT_FILE, REPLY_FILE, REQUEST_FILE};
use crate::fault::Fault;
use crate::OUT_OF_MEMORY_STATUS;

/// How often the parent looks at the child, the clock and the cancel flag.
const POLL: Duration = Duration::from_millis(5);
/// How much of the child's stderr is kept (its end: where a crash says why).
const STDERR_TAIL_BYTES: usize = 64 << 10;

/// The settings of a sandboxed call: which executable serves the child, and what it may use.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The executable to start; its `main` calls [`crate::serve_child_if_requested`] with the
    /// entry first thing.
    pub executable: PathBuf,
    /// Wall-clock limit of one call; the child is killed when it passes.
    pub time_limit: Duration,
    /// Address-space limit (`RLIMIT_AS`) the child sets on itself before it reads its input,
    /// in bytes; `None` leaves it unlimited.
    pub address_space: Option<u64>,
    /// When set (a cancelled job), the child is killed and the call returns
    /// [`SandboxError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Honour [`crate::FAULT_MARKER`]s in inputs (tests only).
    pub fault_injection: bool,
}

impl Sandbox {
    /// This executable as the child, with the given limits, no cancellation and no faults.
    pub fn current_exe(time_limit: Duration, address_space: Option<u64>) -> std::io::Result<Self> {
        Ok(Self {
            executable: std::env::current_exe()?,
            time_limit,
            address_space,
            cancel: None,
            fault_injection: false,
        })
    }

    /// Like [`Sandbox::current_exe`], when this executable serves `entry` (it listed it in
    /// [`crate::serve_child_if_requested`]); `None` otherwise.
    pub fn for_served(
        entry: &Entry,
        time_limit: Duration,
        address_space: Option<u64>,
    ) -> Option<Self> {
        if !crate::serves(entry) {
            return None;
        }
        Self::current_exe(time_limit, address_space).ok()
    }

    /// Runs `entry` in a child with `request` and `input`, and returns its report and output.
    pub fn run<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        entry: &Entry,
        request: &Req,
        input: &[u8],
    ) -> Result<Reply<Rep>, SandboxError> {
        let scratch = Scratch::new().map_err(io_error("creating the child's directory"))?;
        let request =
            serde_json::to_vec(request).map_err(|err| SandboxError::Request(err.to_string()))?;
        std::fs::write(scratch.0.join(REQUEST_FILE), request)
            .map_err(io_error("writing the child's request"))?;
        std::fs::write(scratch.0.join(INPUT_FILE), input)
            .map_err(io_error("writing the child's input"))?;
        let fault = if self.fault_injection {
            Fault::find_in(input)
        } else {
            None
        };
        let mut child = Command::new(&self.executable)
            .arg(CHILD_ARG)
            .arg(entry.name)
            .arg(std::process::id().to_string())
            .arg(self.address_space.map_or("none".into(), |b| b.to_string()))
            .arg(fault.map_or("none", Fault::name))
            .arg(&scratch.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| SandboxError::Start {
                executable: self.executable.clone(),
                reason: err.to_string(),
            })?;
        // Drained on a thread, so a chatty child never blocks on a full pipe.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            let start = text.len().saturating_sub(STDERR_TAIL_BYTES);
            String::from_utf8_lossy(&text[start..]).into_owned()
        });
        let started = Instant::now();
        let stopped = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(err) => break Err(io_error("waiting for the child")(err)),
            }
            if started.elapsed() >= self.time_limit {
                break Err(SandboxError::TimedOut {
                    limit: self.time_limit,
                });
            }
            if self
                .cancel
                .as_ref()
                .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
            {
                break Err(SandboxError::Cancelled);
            }
            std::thread::sleep(POLL);
        };
        let status = match stopped {
            Ok(status) => status,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stderr_reader.join();
                return Err(err);
            }
        };
        let stderr = stderr_reader.join().unwrap_or_default();
        if status.code() == Some(OUT_OF_MEMORY_STATUS) {
            return Err(SandboxError::OutOfMemory {
                limit: self.address_space,
            });
        }
        if !status.success() {
            return Err(SandboxError::Crashed { status, stderr });
        }
        let report = std::fs::read(scratch.0.join(REPLY_FILE))
            .map_err(|err| SandboxError::BadReply {
                reason: format!("no reply: {err}"),
            })
            .and_then(|bytes| {
                serde_json::from_slice(&bytes).map_err(|err| SandboxError::BadReply {
                    reason: err.to_string(),
                })
            })?;
        let output =
            std::fs::read(scratch.0.join(OUTPUT_FILE)).map_err(|err| SandboxError::BadReply {
                reason: format!("no output: {err}"),
            })?;
        Ok(Reply { report, output })
    }
}

/// What a child answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<R> {
    pub report: R,
    pub output: Vec<u8>,
}

/// Why a sandboxed call produced no reply. The work's own errors come back in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start {}: {reason}", executable.display())]
    Start { executable: PathBuf, reason: String },
    #[error("the request does not serialise: {0}")]
    Request(String),
    #[error("{what}: {reason}")]
    Io { what: &'static str, reason: String },
    #[error("the child did not finish within {} s", limit.as_secs_f64())]
    TimedOut { limit: Duration },
    #[error("cancelled")]
    Cancelled,
    #[error("the child ran out of memory{}", limit.map_or(String::new(), |b| format!(" (limit {} MiB)", b >> 20)))]
    OutOfMemory { limit: Option<u64> },
    /// Ended without a reply: a signal, a panic, an abort on a failed allocation. `stderr` holds
    /// the end of what it printed.
    #[error("the child stopped ({}){}", describe_exit(*status), last_line(stderr).map_or(String::new(), |l| format!(": {l}")))]
    Crashed { status: ExitStatus, stderr: String },
    #[error("the child's reply cannot be read: {reason}")]
    BadReply { reason: String },
}

impl SandboxError {
    /// Whether a later attempt could succeed: the child could not be started or its files
    /// written. Crashes, time-outs and exhausted memory repeat for the same input.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Start { .. } | Self::Io { .. })
    }
}

/// The last non-empty line of `text`, at most 300 characters.
pub fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect())
}

/// How a child ended, in words: `killed by signal 6 (SIGABRT)`, `exited with status 3 without
/// a result`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let name = match signal {
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        (None, Some(code)) => format!("exited with status {code} without a result"),
        (None, None) => "ended without a result".into(),
    }
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> SandboxError {
    move |err| SandboxError::Io {
        what,
        reason: err.to_string(),
    }
}

/// The child's directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "lightbox-isolate-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
