//! Fuzz target: see `stagebus::fuzzing::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stagebus::fuzzing::frame_decoder(data);
});
