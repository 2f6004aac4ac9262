//! Fuzz target: see `stagebus::fuzzing::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stagebus::fuzzing::handshake(data);
});
