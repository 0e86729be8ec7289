//! OCCT runs in a child process: a crash, a hang or a runaway allocation in the CAD kernel fails
//! one job, never the worker. The child is this same executable started with a hidden first
//! argument ([`CHILD_ARG`]); every binary that tessellates calls [`serve_child_if_requested`]
//! first thing in `main`.
//!
//! The parent writes `input.step` into a fresh work directory and starts the child with the
//! parameters as arguments. The child lowers its own address-space limit (`RLIMIT_AS`), reads,
//! meshes and writes `output.glb` plus `result.json` (the stats, or the error). The parent waits
//! with a deadline and kills the child when it passes, or when the job is cancelled.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{tessellate_file, Stats, TessellateError, TessellateParams};

/// The hidden first argument that turns a binary into the OCCT child.
pub const CHILD_ARG: &str = "__lightbox-tessellate-child";

/// Inputs containing this marker trigger a fault in the child when the worker runs with
/// `LIGHTBOX_TESSELLATE_FAULT_INJECTION=1` (tests only): `crash`, `hang` or `alloc`.
pub const FAULT_MARKER: &str = "lightbox-test-fault:";

/// How to start the child, and what it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The executable to start; it must call [`serve_child_if_requested`].
    pub helper: PathBuf,
    /// Wall-clock limit for one tessellation.
    pub timeout: Duration,
    /// Address-space limit of the child, in bytes.
    pub max_memory_bytes: u64,
    /// Honour [`FAULT_MARKER`]s in inputs (tests only).
    pub fault_injection: bool,
}

impl Isolation {
    /// The current executable as helper, with the given limits.
    pub fn current_exe(timeout: Duration, max_memory_bytes: u64) -> std::io::Result<Self> {
        Ok(Self {
            helper: std::env::current_exe()?,
            timeout,
            max_memory_bytes,
            fault_injection: false,
        })
    }
}

/// What the child reports in `result.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
enum ChildReport {
    Ok { stats: Stats },
    Error { error: TessellateError },
}

/// A work directory removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "lightbox-tessellate-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> TessellateError + '_ {
    move |err| TessellateError::Io {
        what: what.to_owned(),
        reason: err.to_string(),
    }
}

/// Runs one tessellation in a child process. `cancel` is polled; when set, the child is killed.
pub fn run_isolated(
    step: &[u8],
    params: &TessellateParams,
    isolation: &Isolation,
    cancel: Option<&AtomicBool>,
) -> Result<(Vec<u8>, Stats), TessellateError> {
    let work = WorkDir::new().map_err(io_error("creating a work directory"))?;
    std::fs::write(work.0.join("input.step"), step).map_err(io_error("writing the input"))?;
    let fault = if isolation.fault_injection {
        find_fault(step)
    } else {
        None
    };
    let mut command = Command::new(&isolation.helper);
    command
        .arg(CHILD_ARG)
        .arg(&work.0)
        .arg(isolation.max_memory_bytes.to_string())
        .arg(params.linear_deflection.unwrap_or(0.0).to_string())
        .arg(params.angular_deflection.unwrap_or(0.0).to_string())
        .arg(fault.unwrap_or("none"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|err| TessellateError::Io {
        what: format!("starting the tessellator {}", isolation.helper.display()),
        reason: err.to_string(),
    })?;
    // Drain stderr on a thread so a chatty child never blocks on a full pipe.
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let start = Instant::now();
    let status: ExitStatus = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_error("waiting for the tessellator"))?
        {
            break status;
        }
        if start.elapsed() > isolation.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TessellateError::TimedOut {
                seconds: isolation.timeout.as_secs_f64(),
            });
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TessellateError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr_text = stderr_reader.join().unwrap_or_default();
    let report = std::fs::read(work.0.join("result.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ChildReport>(&bytes).ok());
    match report {
        Some(ChildReport::Ok { stats }) if status.success() => {
            let glb = std::fs::read(work.0.join("output.glb"))
                .map_err(io_error("reading the tessellator's GLB"))?;
            Ok((glb, stats))
        }
        Some(ChildReport::Error { error }) => Err(error),
        _ => Err(TessellateError::Crashed {
            how: describe_exit(status),
            memory_limit_mib: isolation.max_memory_bytes / (1024 * 1024),
            stderr: last_line(&stderr_text),
        }),
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        (None, Some(code)) => format!("exited with status {code} without a result"),
        (None, None) => "ended without a result".into(),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect())
        .unwrap_or_default()
}

fn find_fault(step: &[u8]) -> Option<&'static str> {
    let marker = FAULT_MARKER.as_bytes();
    let at = step.windows(marker.len()).position(|w| w == marker)?;
    let rest = &step[at + marker.len()..];
    let rest = &rest[..rest.len().min(16)];
    ["crash", "hang", "alloc"]
        .into_iter()
        .find(|f| rest.windows(f.len()).any(|w| w == f.as_bytes()))
}

/// If this process was started as the OCCT child, does the child's work and exits; otherwise
/// returns at once. Call it first thing in `main` of every binary that tessellates.
pub fn serve_child_if_requested() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        return;
    }
    std::process::exit(child_main(&args[2..]));
}

fn child_main(args: &[String]) -> i32 {
    let [dir, memory, linear, angular, fault] = args else {
        eprintln!("usage: {CHILD_ARG} DIR MAX_MEMORY_BYTES LINEAR ANGULAR FAULT");
        return 2;
    };
    let dir = Path::new(dir);
    let memory: u64 = memory.parse().unwrap_or(0);
    if memory > 0 {
        if let Err(err) = rlimit::setrlimit(rlimit::Resource::AS, memory, memory) {
            eprintln!("could not set the memory limit: {err}");
            return 3;
        }
    }
    let positive = |text: &str| text.parse::<f64>().ok().filter(|v| *v > 0.0);
    let params = TessellateParams {
        linear_deflection: positive(linear),
        angular_deflection: positive(angular),
    };
    match fault.as_str() {
        "crash" => std::process::abort(),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        "alloc" => {
            // Reserves address space until the limit refuses: shows the limit holds.
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = Vec::new();
                if block.try_reserve_exact(64 << 20).is_err() {
                    let report = ChildReport::Error {
                        error: TessellateError::OutOfMemory {
                            limit_mib: memory / (1024 * 1024),
                        },
                    };
                    return write_report(dir, &report);
                }
                blocks.push(block);
            }
        }
        _ => {}
    }
    let report = match tessellate_file(&dir.join("input.step"), &params) {
        Ok(done) => match std::fs::write(dir.join("output.glb"), &done.glb) {
            Ok(()) => ChildReport::Ok { stats: done.stats },
            Err(err) => ChildReport::Error {
                error: TessellateError::Io {
                    what: "writing the GLB".into(),
                    reason: err.to_string(),
                },
            },
        },
        Err(TessellateError::OutOfMemory { .. }) => ChildReport::Error {
            error: TessellateError::OutOfMemory {
                limit_mib: memory / (1024 * 1024),
            },
        },
        Err(error) => ChildReport::Error { error },
    };
    write_report(dir, &report)
}

fn write_report(dir: &Path, report: &ChildReport) -> i32 {
    let text = serde_json::to_vec(report).expect("report serialises");
    match std::fs::write(dir.join("result.json"), text) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("could not write result.json: {err}");
            4
        }
    }
}
