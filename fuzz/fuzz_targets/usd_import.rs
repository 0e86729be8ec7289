//! usda, usdc or usdz bytes through the in-process USD importer with small limits, then the GLB
//! and USD writers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: lightbox_fuzz::seed_step("usd_import"), |data: &[u8]| {
    let _ = lightbox_fuzz::with_caught_panics_allowed(|| lightbox_fuzz::usd_import(data));
});
