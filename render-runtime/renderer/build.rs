//! Links the system Embree 3 library (Debian `libembree-dev`).

fn main() {
    println!("cargo:rustc-link-lib=embree3");
    println!("cargo:rerun-if-changed=build.rs");
}
