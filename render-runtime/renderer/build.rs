//! Links the system Embree 3 library (Debian `libembree-dev`), and records where
//! `tools/setup.sh` puts Intel OIDN (`.tools/oidn/lib`) so the renderer can load it at run time
//! from there without `LD_LIBRARY_PATH` (`src/denoise/oidn.rs`); nothing of OIDN is needed to
//! build. Where it is installed, the CPU runtime (OIDN, its CPU device module and TBB) is copied
//! to `<profile>/oidn/lib/` beside the binaries, which `tools/images.sh` puts into the render
//! images at `/usr/local/lib/lightbox/oidn/lib/` (found from `/usr/local/bin/` at run time).

use std::path::{Path, PathBuf};

/// What OIDN's CPU device needs at run time (the GPU device modules are left out).
const OIDN_CPU_RUNTIME: [&str; 4] = [
    "libOpenImageDenoise.so.2",
    "libOpenImageDenoise_core.so.2.5.1",
    "libOpenImageDenoise_device_cpu.so.2.5.1",
    "libtbb.so.12",
];

fn main() {
    println!("cargo:rustc-link-lib=embree3");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIGHTBOX_TOOLS_DIR");
    let tools = match std::env::var_os("LIGHTBOX_TOOLS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest =
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
            // render-runtime/renderer → the workspace root.
            manifest
                .parent()
                .and_then(|p| p.parent())
                .expect("the crate is two levels below the workspace")
                .join(".tools")
        }
    };
    let oidn_lib = tools.join("oidn").join("lib");
    println!(
        "cargo:rustc-env=LIGHTBOX_OIDN_BUILD_DIR={}",
        oidn_lib.display()
    );
    if oidn_lib.join(OIDN_CPU_RUNTIME[0]).is_file() {
        // Only an existing path: a missing one would rerun this script on every build.
        println!(
            "cargo:rerun-if-changed={}",
            oidn_lib.join(OIDN_CPU_RUNTIME[0]).display()
        );
        if let Err(e) = copy_oidn_runtime(&oidn_lib) {
            println!("cargo:warning=OIDN runtime not copied beside the binaries: {e}");
        }
    }
}

fn copy_oidn_runtime(from: &Path) -> std::io::Result<()> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    // OUT_DIR is <profile>/build/<crate>-<hash>/out.
    let Some(profile) = out_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
    else {
        return Ok(());
    };
    let to = profile.join("oidn").join("lib");
    std::fs::create_dir_all(&to)?;
    for name in OIDN_CPU_RUNTIME {
        let (src, dst) = (from.join(name), to.join(name));
        let same = match (std::fs::metadata(&src), std::fs::metadata(&dst)) {
            (Ok(a), Ok(b)) => a.len() == b.len(),
            _ => false,
        };
        if !same {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
