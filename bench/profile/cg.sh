#!/usr/bin/env bash
# bench/profile/cg.sh: instructions per call of each process of a brokered
# case, under callgrind.
#
#   [BROKER_ARGS='--ping-interval 0'] bench/profile/cg.sh OUTDIR MODE N [K]
#   (CG_BIN=DIR: the stagebus and sbbench binaries of DIR, e.g. a copy of
#   an earlier build, instead of bench/target/release)
#
# Runs `stagebus broker` (Unix socket), `sbbench publisher` and `sbbench
# caller ADDR MODE 0 N K`, each under callgrind, writing OUTDIR/{broker,
# publisher,caller}.out. Run it twice (a short N and a long N) and divide
# the difference of the totals by the difference of N: start-up cancels
# out (bench/profile/percall.sh does that).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$1 mode=$2 n=$3 k=${4:-1}
mkdir -p "$out"; rm -f "$out"/*.out
bin="${CG_BIN:-$here/target/release}"
dir=$(mktemp -d)
sock="$dir/b.sock"
cg=(valgrind --tool=callgrind --dump-instr=no --collect-jumps=no)
export SBBENCH_LIMIT=600
"${cg[@]}" --callgrind-out-file="$out/broker.out" "$bin/stagebus" broker --listen "unix:$sock" ${BROKER_ARGS:-} \
	>"$dir/broker.log" 2>"$out/broker.vg" &
bpid=$!
for _ in $(seq 600); do [ -S "$sock" ] && break; kill -0 "$bpid" 2>/dev/null || { cat "$out/broker.vg" >&2; exit 1; }; sleep 0.1; done
"${cg[@]}" --callgrind-out-file="$out/publisher.out" "$bin/sbbench" publisher "unix:$sock" \
	>"$dir/pub.log" 2>"$out/publisher.vg" &
ppid=$!
for _ in $(seq 600); do grep -q ready "$dir/pub.log" 2>/dev/null && break; sleep 0.1; done
"${cg[@]}" --callgrind-out-file="$out/caller.out" "$bin/sbbench" caller "unix:$sock" "$mode" 0 "$n" "$k" \
	>"$dir/caller.log" 2>"$out/caller.vg"
kill -TERM "$bpid"
wait "$bpid" || true
wait "$ppid" || true
rm -rf "$dir"
for p in broker publisher caller; do
	printf '%s %s\n' "$p" "$(sed -n 's/^summary: //p' "$out/$p.out")"
done
