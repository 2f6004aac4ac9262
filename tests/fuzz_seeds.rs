//! The fuzz targets' entry points (`stagebus::fuzzing`, run by `fuzz/`
//! under cargo-fuzz) over their seed corpora, in the ordinary test run:
//! the seeds are what they claim to be and no entry point panics on them.

use std::path::Path;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{target} has seeds");
    out
}

#[test]
fn every_target_runs_over_its_seeds() {
    for (target, run) in [
        (
            "frame_decoder",
            stagebus::fuzzing::frame_decoder as fn(&[u8]),
        ),
        ("routed_checker", stagebus::fuzzing::routed_checker),
        ("args_decoding", stagebus::fuzzing::args_decoding),
        ("handshake", stagebus::fuzzing::handshake),
    ] {
        for seed in seeds(target) {
            run(&seed);
        }
    }
}

#[test]
fn the_seeds_are_well_formed_frames_and_args() {
    for body in seeds("routed_checker") {
        stagebus::wire::decode_body(&body).expect("a routed_checker seed is a frame body");
    }
    for payload in seeds("args_decoding") {
        stagebus::wire::Payload(payload)
            .decode()
            .expect("an args_decoding seed is args");
    }
}
