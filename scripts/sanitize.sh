#!/usr/bin/env bash
# Runs the Rust tests of stagebus under AddressSanitizer, whose leak
# checker (LeakSanitizer) runs at every test binary's exit: a reference
# cycle that outlives its objects' owners fails the run. Not part of
# scripts/test.sh (it needs the nightly toolchain and a second build);
# README.md says when to run it.
#
#   bash scripts/sanitize.sh            # every Rust test that can run here
#   bash scripts/sanitize.sh stage_scenarios cancel_cascade   # some of them
#
# How it builds, and why:
# * nightly, because `-Zsanitizer` is unstable. The toolchain is installed
#   with rustup when missing (STAGEBUS_SANITIZE_TOOLCHAIN picks another).
# * an explicit `--target`, so that RUSTFLAGS reach only the crate and its
#   tests, not build scripts and proc macros (which run at build time and
#   must not need the sanitizer runtime).
# * no `-Zbuild-std`: the standard library stays uninstrumented, which
#   only means that a bad access inside std itself goes unseen. Leaks are
#   seen everywhere: LeakSanitizer intercepts malloc, which Rust's default
#   allocator uses.
# * its own target dir, target/sanitize, so that the ordinary build is
#   left alone.
#
# Left out, because they load the library into programs the sanitizer
# did not build: tests/c_api.rs (C and C++ programs; they run under
# valgrind in scripts/test.sh instead), tests/perl.rs (perl) and
# tests/examples.rs (C, C++ and Perl examples). An instrumented shared
# library cannot be loaded into an uninstrumented process (the ASan
# runtime must come first), and instrumenting perl or the C programs is
# out of this script's reach.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

toolchain=${STAGEBUS_SANITIZE_TOOLCHAIN:-nightly}

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "==> installing the $toolchain toolchain"
    rustup toolchain install "$toolchain" --profile minimal
fi

target=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
case "$target" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
    *)
        echo "scripts/sanitize.sh: AddressSanitizer with leak checking is set up for Linux on x86_64 and aarch64, not $target" >&2
        exit 1
        ;;
esac

skip=(c_api perl examples)

if [ "$#" -gt 0 ]; then
    tests=("$@")
else
    tests=()
    for file in tests/*.rs; do
        name=$(basename "$file" .rs)
        case " ${skip[*]} " in
            *" $name "*) ;;
            *) tests+=("$name") ;;
        esac
    done
fi

test_args=(--lib --bins)
for name in "${tests[@]}"; do
    test_args+=(--test "$name")
done

export RUSTFLAGS="-Zsanitizer=address -Cdebuginfo=1 -Cforce-frame-pointers=yes"
# detect_leaks is LeakSanitizer; the others make a finding fail loudly.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
# Tests that re-run their own binary as a child (tests/cancel_cascade.rs)
# inherit both, so the children are checked too.

echo "==> cargo +$toolchain test --target $target (AddressSanitizer, LeakSanitizer): ${tests[*]}"
cargo "+$toolchain" test --no-fail-fast --target "$target" --target-dir target/sanitize "${test_args[@]}"
echo "==> sanitize: every test passed, no leak, no memory error"
