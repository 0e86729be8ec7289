//! The only `unsafe` in the crate: `prctl(PR_SET_PDEATHSIG)`, which std does not wrap.
#![allow(unsafe_code)]

/// Asks the kernel to SIGKILL this process when its parent (the thread that started it) ends,
/// so a child never outlives a worker that was killed.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if result != 0 {
        eprintln!(
            "cannot ask to die with the parent: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Other systems have no parent-death signal; the parent's time limit still bounds the child.
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent() {}
