#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: runs each cargo-fuzz target of fuzz/ for
# SECONDS (default 10), one after the other, from its corpus
# (fuzz/corpus/TARGET: the committed seed-* files plus what earlier runs
# found). Installs the nightly toolchain and cargo-fuzz when missing.
# A crash stops the run with libFuzzer's report; the input that crashed
# is left in fuzz/artifacts/TARGET/ (replay: cargo +nightly fuzz run
# TARGET fuzz/artifacts/TARGET/crash-...).
set -euo pipefail

seconds="${1:-10}"
case "$seconds" in
'' | *[!0-9]*)
	echo "usage: scripts/fuzz.sh [SECONDS]" >&2
	exit 2
	;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	echo "scripts/fuzz.sh: installing the nightly toolchain" >&2
	rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "scripts/fuzz.sh: installing cargo-fuzz" >&2
	cargo install cargo-fuzz --locked
fi

for target in frame_decoder routed_checker args_decoding handshake; do
	echo "== $target (${seconds}s)"
	cargo +nightly fuzz run "$target" "corpus/$target" -- \
		-max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 -print_final_stats=1
done
