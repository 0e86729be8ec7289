//! One control byte (output parameters) and a PNG, JPEG or WebP through `convert_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: lightbox_fuzz::seed_step("image_decode"), |data: &[u8]| {
    lightbox_fuzz::image_decode(data);
});
