#![no_main]

// The target body is shared with the in-suite run (tests/fuzz.rs), so both test the same thing.
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::checkpoint(data));
