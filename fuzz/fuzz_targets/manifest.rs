//! A delivery's manifest: any bytes either parse or name a field, never panic, and the
//! problem's text never quotes the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar_loaders::delivery::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = Manifest::parse(data) {
        let _ = problem.to_string();
    }
});
