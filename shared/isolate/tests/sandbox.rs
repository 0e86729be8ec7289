//! The sandbox against real child processes: this test executable is its own child (it has a
//! `main` of its own, `harness = false`, so it can serve entries first thing).
//!
//! `cargo test -p lightbox-isolate --test sandbox [FILTER]`

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lightbox_isolate::{ChildCall, ChildReply, Entry, Sandbox, SandboxError};
use serde::{Deserialize, Serialize};

/// A typed error, as a child's work reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WorkError {
    Empty,
    TooLong { length: u64, limit: u64 },
}

/// Reverses the input, refusing empty and long inputs with typed errors.
const REVERSE: Entry = Entry {
    name: "reverse",
    main: reverse,
};

fn reverse(call: &ChildCall) -> Result<ChildReply, String> {
    let limit: u64 = call.request().map_err(|err| err.to_string())?;
    let mut input = call.read_input().map_err(|err| err.to_string())?;
    let report: Result<u64, WorkError> = if input.is_empty() {
        Err(WorkError::Empty)
    } else if input.len() as u64 > limit {
        Err(WorkError::TooLong {
            length: input.len() as u64,
            limit,
        })
    } else {
        Ok(input.len() as u64)
    };
    input.reverse();
    Ok(ChildReply::new(&report, input))
}

/// Reserves the number of bytes it is asked for (address space, barely touched), as a parser
/// that trusts a declared size does.
const ALLOCATE: Entry = Entry {
    name: "allocate",
    main: |call| {
        let bytes: usize = call.request().map_err(|err| err.to_string())?;
        let mut block: Vec<u8> = Vec::with_capacity(bytes);
        block.push(1);
        Ok(ChildReply::new(&(block.capacity() as u64), Vec::new()))
    },
};

/// Panics.
const PANIC: Entry = Entry {
    name: "panic",
    main: |_| panic!("the entry gave up"),
};

/// Writes its process id to the file named by the request, then sleeps.
const RECORD_PID_AND_HANG: Entry = Entry {
    name: "record-pid-and-hang",
    main: |call| {
        let path: PathBuf = call.request().map_err(|err| err.to_string())?;
        std::fs::write(path, std::process::id().to_string()).map_err(|err| err.to_string())?;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    },
};

/// Listed nowhere in `main`: a child asked for it refuses.
const UNSERVED: Entry = Entry {
    name: "unserved",
    main: |_| Ok(ChildReply::new(&(), Vec::new())),
};

const SERVED: [Entry; 4] = [REVERSE, ALLOCATE, PANIC, RECORD_PID_AND_HANG];

/// Starts a sandboxed child that records its id in `pid_file` and hangs; never returns.
const INTERMEDIATE_ARG: &str = "--intermediate-parent";

fn sandbox() -> Sandbox {
    Sandbox::current_exe(Duration::from_secs(20), Some(1 << 30)).unwrap()
}

fn typed_reports_and_output_cross_the_process_boundary() {
    let sandbox = sandbox();
    let reply = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &10, b"abc")
        .unwrap();
    assert_eq!(reply.report, Ok(3));
    assert_eq!(reply.output, b"cba");
    let reply = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &2, b"abc")
        .unwrap();
    assert_eq!(
        reply.report,
        Err(WorkError::TooLong {
            length: 3,
            limit: 2
        })
    );
    let reply = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &2, b"")
        .unwrap();
    assert_eq!(reply.report, Err(WorkError::Empty));
}

fn a_child_past_its_time_limit_is_killed() {
    let mut sandbox = sandbox();
    sandbox.time_limit = Duration::from_millis(500);
    sandbox.fault_injection = true;
    let start = Instant::now();
    let err = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &100, b"# lightbox-test-fault: hang")
        .unwrap_err();
    assert_eq!(
        err,
        SandboxError::TimedOut {
            limit: Duration::from_millis(500)
        }
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn cancelling_kills_the_child() {
    let mut sandbox = sandbox();
    sandbox.fault_injection = true;
    let cancel = Arc::new(AtomicBool::new(false));
    sandbox.cancel = Some(cancel.clone());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.store(true, Ordering::Relaxed);
    });
    let start = Instant::now();
    let err = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &100, b"lightbox-test-fault: hang")
        .unwrap_err();
    assert_eq!(err, SandboxError::Cancelled);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn faults_happen_only_when_injection_is_on() {
    let mut sandbox = sandbox();
    let input = b"/* lightbox-test-fault: crash */";
    let reply = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &100, input)
        .unwrap();
    assert_eq!(reply.report, Ok(input.len() as u64));

    sandbox.fault_injection = true;
    let err = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &100, input)
        .unwrap_err();
    let SandboxError::Crashed { status, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        lightbox_isolate::describe_exit(*status),
        "killed by signal 6 (SIGABRT)"
    );

    let err = sandbox
        .run::<u64, Result<u64, WorkError>>(&REVERSE, &100, b"lightbox-test-fault: alloc")
        .unwrap_err();
    assert_eq!(
        err,
        SandboxError::OutOfMemory {
            limit: Some(1 << 30)
        }
    );
    assert_eq!(
        err.to_string(),
        "the child ran out of memory (limit 1024 MiB)"
    );
}

fn the_address_space_limit_holds_for_real_allocations() {
    let sandbox = sandbox();
    // Within the limit: reserved.
    let reply = sandbox
        .run::<usize, u64>(&ALLOCATE, &(64 << 20), b"")
        .unwrap();
    assert_eq!(reply.report, 64 << 20);
    // Over it: Rust's allocator gives up and aborts, naming the size.
    let err = sandbox
        .run::<usize, u64>(&ALLOCATE, &(3 << 30), b"")
        .unwrap_err();
    let SandboxError::Crashed { stderr, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        stderr.contains("memory allocation of 3221225472 bytes failed"),
        "{stderr}"
    );
    // Unlimited, the same allocation succeeds (the limit, not the machine, refused it).
    let mut unlimited = sandbox.clone();
    unlimited.address_space = None;
    let reply = unlimited
        .run::<usize, u64>(&ALLOCATE, &(3 << 30), b"")
        .unwrap();
    assert_eq!(reply.report, 3 << 30);
}

fn panics_and_unknown_entries_fail_the_call_saying_why() {
    let sandbox = sandbox();
    let err = sandbox.run::<(), ()>(&PANIC, &(), b"").unwrap_err();
    let SandboxError::Crashed { status, stderr } = &err else {
        panic!("{err}");
    };
    assert_eq!(status.code(), Some(101));
    assert!(stderr.contains("the entry gave up"), "{stderr}");

    let err = sandbox.run::<(), ()>(&UNSERVED, &(), b"").unwrap_err();
    assert!(
        err.to_string()
            .contains("this executable serves no child \"unserved\""),
        "{err}"
    );
    assert!(!err.is_transient());

    let mut missing = sandbox.clone();
    missing.executable = PathBuf::from("/nonexistent/lightbox-child");
    let err = missing.run::<(), ()>(&UNSERVED, &(), b"").unwrap_err();
    assert!(matches!(err, SandboxError::Start { .. }), "{err}");
    assert!(err.is_transient());
}

fn the_executable_knows_which_entries_it_serves() {
    assert!(lightbox_isolate::serves(&REVERSE));
    assert!(!lightbox_isolate::serves(&UNSERVED));
    assert!(Sandbox::for_served(&REVERSE, Duration::from_secs(1), None).is_some());
    assert!(Sandbox::for_served(&UNSERVED, Duration::from_secs(1), None).is_none());
}

/// Whether process `pid` has ended (gone, or a zombie waiting for its new parent to reap it).
fn has_ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn a_child_dies_with_its_parent() {
    let pid_file = std::env::temp_dir().join(format!(
        "lightbox-isolate-orphan-{}.pid",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&pid_file);
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(INTERMEDIATE_ARG)
        .arg(&pid_file)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            if !pid.is_empty() {
                break pid;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the child never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&pid_file);
    assert!(!has_ended(&pid), "the child runs while its parent does");
    // SIGKILL: the parent has no chance to clean up; only the kernel can end the child.
    parent.kill().unwrap();
    parent.wait().unwrap();
    // Nor to remove the child's directory, which this test does instead.
    let scratch_prefix = format!("lightbox-isolate-{}-", parent.id());
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&scratch_prefix)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let killed = Instant::now();
    while !has_ended(&pid) {
        if killed.elapsed() > Duration::from_secs(5) {
            // Not left behind when the test fails.
            let _ = std::process::Command::new("kill").arg(&pid).status();
            panic!("child {pid} outlived its parent");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn intermediate_parent(pid_file: &Path) -> ! {
    let sandbox = Sandbox::current_exe(Duration::from_secs(60), None).unwrap();
    let result = sandbox.run::<&Path, ()>(&RECORD_PID_AND_HANG, &pid_file, b"");
    eprintln!("the hanging child returned: {result:?}");
    std::process::exit(1);
}

fn main() {
    lightbox_isolate::serve_child_if_requested(&SERVED);
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(INTERMEDIATE_ARG) {
        intermediate_parent(Path::new(&args[2]));
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let tests: [(&str, fn()); 8] = [
        (
            "typed_reports_and_output_cross_the_process_boundary",
            typed_reports_and_output_cross_the_process_boundary,
        ),
        (
            "a_child_past_its_time_limit_is_killed",
            a_child_past_its_time_limit_is_killed,
        ),
        ("cancelling_kills_the_child", cancelling_kills_the_child),
        (
            "faults_happen_only_when_injection_is_on",
            faults_happen_only_when_injection_is_on,
        ),
        (
            "the_address_space_limit_holds_for_real_allocations",
            the_address_space_limit_holds_for_real_allocations,
        ),
        (
            "panics_and_unknown_entries_fail_the_call_saying_why",
            panics_and_unknown_entries_fail_the_call_saying_why,
        ),
        (
            "the_executable_knows_which_entries_it_serves",
            the_executable_knows_which_entries_it_serves,
        ),
        ("a_child_dies_with_its_parent", a_child_dies_with_its_parent),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let outcome = catch_unwind(AssertUnwindSafe(test));
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
