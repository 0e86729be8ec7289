//! Builds the Draco shim (`draco/shim.cpp`, KHR_draco_mesh_compression) with `cc` and links
//! Google's Draco decoder statically from Debian's `libdraco-dev` (`tools/setup.sh` installs it).
//! `DRACO_INCLUDE_DIR` / `DRACO_LIB_DIR` override the paths.

use std::path::PathBuf;

fn main() {
    let include = std::env::var("DRACO_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/include"));
    if !include.join("draco/compression/decode.h").exists() {
        panic!(
            "Draco headers not found in {}: run tools/setup.sh (Debian package libdraco-dev) or \
             set DRACO_INCLUDE_DIR",
            include.display()
        );
    }
    println!("cargo:rerun-if-changed=draco/shim.cpp");
    println!("cargo:rerun-if-changed=draco/shim.h");
    println!("cargo:rerun-if-env-changed=DRACO_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=DRACO_LIB_DIR");
    cc::Build::new()
        .cpp(true)
        .file("draco/shim.cpp")
        .include(&include)
        .include("draco")
        .flag("-std=c++17")
        .opt_level(2)
        .warnings(false)
        .compile("lightbox_draco_shim");
    if let Ok(dir) = std::env::var("DRACO_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    } else {
        // Debian's multiarch folder for the target (x86_64-linux-gnu, aarch64-linux-gnu).
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
        println!("cargo:rustc-link-search=native=/usr/lib/{arch}-linux-gnu");
    }
    // Static, so the function images need no Draco runtime package.
    println!("cargo:rustc-link-lib=static=draco");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
