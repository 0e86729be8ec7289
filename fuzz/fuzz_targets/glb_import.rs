//! GLB / glTF bytes through the importer with small limits, then the GLB and USD writers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: lightbox_fuzz::seed_step("glb_import"), |data: &[u8]| {
    lightbox_fuzz::with_caught_panics_allowed(|| lightbox_fuzz::glb_import(data));
});
