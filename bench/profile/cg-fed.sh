#!/usr/bin/env bash
# bench/profile/cg-fed.sh: instructions per call of each process of
# fed.rtt (caller -> broker b0 -> NATS n0 -> n1 -> broker b1 ->
# publisher), the two brokers under callgrind.
#
#   [CG_BIN=DIR] bench/profile/cg-fed.sh OUTDIR N
#   (CG_BIN: the stagebus and sbbench binaries of DIR, e.g. a copy of an
#   earlier build, instead of bench/target/release)
#
# Starts a 2-node nats-server cluster (JetStream on, for the directory)
# on free loopback ports, `stagebus broker --federate` b0 and b1 under
# callgrind, `sbbench publisher` on b1 and `sbbench caller ADDR seq 0 N 1`
# on b0 (the publisher and caller under callgrind too), writing
# OUTDIR/{b0,b1,publisher,caller}.out. Run it twice (a short and a long N)
# and give both to percall.py (PROC b0 or b1): start-up cancels out.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$1 n=$2
mkdir -p "$out"; rm -f "$out"/*.out
bin="${CG_BIN:-$here/target/release}"
dir=$(mktemp -d)
cg=(valgrind --tool=callgrind --dump-instr=no --collect-jumps=no)
export SBBENCH_LIMIT=900
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p0=$(port) p1=$(port) r0=$(port) r1=$(port) m0=$(port) m1=$(port)
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
pids=()
cleanup() { for f in "$dir"/b*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done; for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait || true; rm -rf "$dir"; }
trap cleanup EXIT
for k in 0 1; do
	eval "p=\$p$k r=\$r$k m=\$m$k o=\$r$((1-k))"
	cat >"$dir/n$k.conf" <<CONF
server_name: n$k
listen: 127.0.0.1:$p
http: 127.0.0.1:$m
jetstream { store_dir: "$dir/js$k" }
cluster { name: prof, listen: 127.0.0.1:$r, routes: [nats-route://127.0.0.1:$o] }
CONF
	"$nats" -c "$dir/n$k.conf" >/dev/null 2>&1 &
	pids+=($!)
done
for m in $m0 $m1; do
	for _ in $(seq 200); do curl -sf "http://127.0.0.1:$m/healthz" | grep -q ok && break; sleep 0.1; done
done
sleep 1
start_broker() { # k urls
	"${cg[@]}" --callgrind-out-file="$out/b$1.out" "$bin/stagebus" broker --listen tcp://127.0.0.1:0 \
		--federate "$2" --broker-id "b$1" --namespace prof >"$dir/b$1.log" 2>"$out/b$1.vg" &
	echo $! >"$dir/b$1.pid"
	for _ in $(seq 600); do grep -q 'listening on' "$dir/b$1.log" 2>/dev/null && break; sleep 0.1; done
	sed -n 's/^listening on //p' "$dir/b$1.log" | head -1
}
a0=$(start_broker 0 "nats://127.0.0.1:$p0,nats://127.0.0.1:$p1")
a1=$(start_broker 1 "nats://127.0.0.1:$p1,nats://127.0.0.1:$p0")
"${cg[@]}" --callgrind-out-file="$out/publisher.out" "$bin/sbbench" publisher "$a1" \
	>"$dir/pub.log" 2>"$out/publisher.vg" &
pids+=($!)
for _ in $(seq 600); do grep -q ready "$dir/pub.log" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 300); do "$bin/stagebus" list --broker "$a0" 2>/dev/null | grep -q bench_stage && break; sleep 0.1; done
"${cg[@]}" --callgrind-out-file="$out/caller.out" "$bin/sbbench" caller "$a0" seq 0 "$n" 1 \
	>"$dir/caller.log" 2>"$out/caller.vg"
# Brokers first (callgrind writes on exit), then the NATS nodes.
for k in 0 1; do kill -TERM "$(cat "$dir/b$k.pid")" 2>/dev/null || true; done
for k in 0 1; do
	for _ in $(seq 300); do kill -0 "$(cat "$dir/b$k.pid")" 2>/dev/null || break; sleep 0.1; done
done
for p in b0 b1 publisher caller; do
	printf '%s %s\n' "$p" "$(sed -n 's/^summary: //p' "$out/$p.out" 2>/dev/null)"
done
