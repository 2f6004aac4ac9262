//! Fuzz target: see `stagebus::fuzzing::args_decoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stagebus::fuzzing::args_decoding(data);
});
