//! The source registry (operator-written, but parsed with the same care).
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar_loaders::registry::Registry;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Registry::parse(text, "fuzz");
    }
});
