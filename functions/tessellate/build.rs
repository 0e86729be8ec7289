//! Builds the OpenCASCADE shim (`occt/shim.cpp`) with `cc` and links the OCCT 7.6 libraries from
//! Debian (`tools/setup.sh` installs them). `OCCT_INCLUDE_DIR` / `OCCT_LIB_DIR` override the paths.

use std::path::PathBuf;

/// The OCCT toolkits the shim uses: data exchange (STEP, XCAF), modelling (for the sample
/// models), meshing and the glTF writer used by the benchmark's comparison path.
const OCCT_LIBS: &[&str] = &[
    "TKXDESTEP",
    "TKSTEP",
    "TKSTEPAttr",
    "TKSTEP209",
    "TKSTEPBase",
    "TKXSBase",
    "TKRWMesh",
    "TKXCAF",
    "TKVCAF",
    "TKV3d",
    "TKService",
    "TKCAF",
    "TKLCAF",
    "TKCDF",
    "TKMesh",
    "TKFillet",
    "TKOffset",
    "TKBool",
    "TKBO",
    "TKPrim",
    "TKShHealing",
    "TKTopAlgo",
    "TKGeomAlgo",
    "TKBRep",
    "TKGeomBase",
    "TKG3d",
    "TKG2d",
    "TKMath",
    "TKernel",
];

fn main() {
    let include = std::env::var("OCCT_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/include/opencascade"));
    if !include.join("STEPCAFControl_Reader.hxx").exists() {
        panic!(
            "OpenCASCADE headers not found in {}: run tools/setup.sh (Debian packages \
             libocct-data-exchange-dev libocct-ocaf-dev libocct-modeling-algorithms-dev \
             libocct-visualization-dev) or set OCCT_INCLUDE_DIR",
            include.display()
        );
    }
    println!("cargo:rerun-if-changed=occt/shim.cpp");
    println!("cargo:rerun-if-changed=occt/shim.h");
    println!("cargo:rerun-if-env-changed=OCCT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=OCCT_LIB_DIR");
    cc::Build::new()
        .cpp(true)
        .file("occt/shim.cpp")
        .include(&include)
        .include("occt")
        .flag("-std=c++17")
        // The extraction loops run on every triangle: optimise them even in debug builds.
        .opt_level(2)
        .warnings(false)
        .compile("lightbox_occt_shim");
    if let Ok(dir) = std::env::var("OCCT_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    }
    for lib in OCCT_LIBS {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}
