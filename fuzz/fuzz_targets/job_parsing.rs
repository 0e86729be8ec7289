//! A job message payload, through everything a worker does with it before the handler runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: lightbox_fuzz::seed_step("job_parsing"), |data: &[u8]| {
    lightbox_fuzz::job_payload(data);
});
