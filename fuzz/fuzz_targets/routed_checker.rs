//! Fuzz target: see `stagebus::fuzzing::routed_checker`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stagebus::fuzzing::routed_checker(data);
});
