//! The CSV parser: the first byte picks the file kind, the rest is the file.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poplar_loaders::registry::FeedFormat;

const FILES: [&str; 4] = ["patients.csv", "events.csv", "medications.csv", "encounters.csv"];

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let name = FILES[usize::from(*first) % FILES.len()];
    common::parse(FeedFormat::Csv, &[(name, rest)]);
});
