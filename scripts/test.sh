#!/usr/bin/env bash
# Runs every test of stagebus, cheapest first, and stops at the first
# failure. This is the one test command: README.md names it and .ci/run
# calls it, so what passes here is what passes in CI.
#
# Missing system packages are installed (as root, through apt-get, one
# update and one install) before any step runs; a new suite that needs a
# package adds a `require` or `require_pkg` line below.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step says how long the run has taken so far, so a slow CI run
# shows where its time went.
step() {
    printf '\n==> [%ds] %s\n' "$SECONDS" "$*"
}

fail() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}

missing_packages=()

# require COMMAND PACKAGE: PACKAGE provides COMMAND.
require() {
    command -v "$1" >/dev/null 2>&1 || missing_packages+=("$2")
}

# require_pkg PACKAGE: for packages that install no command (libraries,
# Perl modules). The exact status is compared because dpkg also knows
# removed packages whose config files remain.
require_pkg() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing_packages+=("$1")
}

# require_component SUBCOMMAND COMPONENT: `cargo SUBCOMMAND` comes with
# the rustup component COMPONENT, added at once when missing.
require_component() {
    cargo "$1" --version >/dev/null 2>&1 && return 0
    command -v rustup >/dev/null 2>&1 ||
        fail "cargo $1 is missing and there is no rustup to add $2"
    rustup component add "$2"
}

install_missing() {
    if [ "${#missing_packages[@]}" -eq 0 ]; then
        return 0
    fi
    step "installing ${missing_packages[*]}"
    [ "$(id -u)" -eq 0 ] || fail "missing ${missing_packages[*]}; run as root or install them"
    command -v apt-get >/dev/null 2>&1 ||
        fail "missing ${missing_packages[*]} and no apt-get to install them"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_packages[@]}"
}

step "checking tools"
command -v cargo >/dev/null 2>&1 || fail "cargo not found; install Rust from https://rustup.rs"
require_component fmt rustfmt
require_component clippy clippy
# tests/header.rs compiles the C header as C99 and C++17; tests/c_api.rs
# builds C programs through pkg-config, checks their SONAME with readelf
# and runs them again under valgrind (skipped, not failed, without it).
require cc gcc
require c++ g++
require pkg-config pkg-config
require readelf binutils
# tests/readme_recipe.rs runs the README's C recipe, which starts with make.
require make make
require valgrind valgrind
# tests/examples.rs builds the examples that embed the loop in libevent,
# libev, GLib and libuv.
require_pkg libevent-dev
require_pkg libev-dev
require_pkg libglib2.0-dev
require_pkg libuv1-dev
# tests/perl.rs runs the Perl binding (FFI::Platypus) under POE and
# AnyEvent; without these modules its tests would only skip.
require prove perl
# tests/nats_client.rs (and the federation tests) start their own
# nats-server processes on free loopback ports.
require nats-server nats-server
# tests/install.rs runs scripts/install.sh, renders the installed man
# page with `man -l` and loads the bash completions.
require man man-db
require bash bash
require_pkg libffi-platypus-perl
require_pkg libpoe-perl
require_pkg libanyevent-perl
# The installed Perl distribution finds libstagebus with FFI::CheckLib
# (bindings/perl/t/26-library-lookup.t checks both ways).
require_pkg libffi-checklib-perl
install_missing

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "cargo build --all-targets"
cargo build --all-targets

# The timing-sensitive suites (concurrency, load, faults, reconnects,
# cancellation, fuzzing, the scenario suites of SEMANTICS.md) run once,
# in release with stagebus's own code built with debug assertions and
# overflow checks: optimised, because a debug build hides races that
# faster code shows, and checked as a debug build is. (Only stagebus's
# own crates are built differently, so the release build of the
# dependencies, which tests/readme_recipe.rs makes, serves both.)
# Everything else runs once in debug: the unit tests (in the library
# and the binary, mostly the cores and parsers, which keep no time), the
# doc tests, the suites of behaviour that does not depend on speed
# (argument checks, the command line, reports, policies), and the suites
# that build the library themselves and run C, C++, Perl or installed
# programs against it. Running each suite once keeps the whole command
# within its time budget.
checked_suites=(
    attack broker_os cancel_cascade close_linger deadlines dropped_at_once
    embedded federation federation_faults liveness load_fault nats_client
    proxysession reconnect reconnect_restore request_properties routing
    signals stage_scenarios wire_fuzz
)
checked_args=()
debug_args=()
for name in "${checked_suites[@]}"; do
    [ -f "tests/$name.rs" ] || fail "checked suite tests/$name.rs does not exist"
    checked_args+=(--test "$name")
done
for file in tests/*.rs; do
    name=$(basename "$file" .rs)
    case " ${checked_suites[*]} " in
    *" $name "*) ;;
    *) debug_args+=(--test "$name") ;;
    esac
done

step "cargo test (debug: unit tests and $((${#debug_args[@]} / 2)) suites)"
cargo test --lib --bins "${debug_args[@]}"

step "cargo test --doc"
cargo test --doc

step "cargo test --release, checked (the ${#checked_suites[@]} timing-sensitive suites)"
cargo test --release \
    --config 'profile.release.package.stagebus.debug-assertions=true' \
    --config 'profile.release.package.stagebus.overflow-checks=true' \
    "${checked_args[@]}"

step "all tests passed"
