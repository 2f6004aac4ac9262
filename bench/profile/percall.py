#!/usr/bin/env python3
"""Instructions per call of each function, from two callgrind runs.

    percall.py SHORT_DIR LONG_DIR DELTA_N PROC [--inclusive] [--top N]
    percall.py SHORT LONG DELTA_N PROC --vs SHORT2 LONG2   (difference of two builds)

SHORT_DIR and LONG_DIR hold PROC.out from bench/profile/cg.sh with N and
N + DELTA_N calls; each function's count is (long - short) / DELTA_N, so
start-up cancels out.
"""
import re, subprocess, sys

def table(path, inclusive):
    args = ["callgrind_annotate", "--threshold=100", "--auto=no"]
    if inclusive:
        args.append("--inclusive=yes")
    out = subprocess.run(args + [path], capture_output=True, text=True).stdout
    t = {}
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) (?:\([^)]*\))?\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        name = m.group(2)
        if name.startswith("PROGRAM TOTALS"):
            total = n
            continue
        name = re.sub(r"/rustc/[0-9a-f]+/library/", "", name)
        name = re.sub(r"/root/.cargo/registry/src/[^/]+/", "", name)
        name = re.sub(r" \[[^\]]*\]$", "", name)
        name = re.sub(r"^[^ :]*?/(?=(src|bench)/)", "", name)
        t[name] = t.get(name, 0) + n
    return total, t

def per_call(short, long_, dn, proc, inclusive):
    ts, s = table(f"{short}/{proc}.out", inclusive)
    tl, l = table(f"{long_}/{proc}.out", inclusive)
    d = {k: (l.get(k, 0) - s.get(k, 0)) / dn for k in set(s) | set(l)}
    return (tl - ts) / dn, d

def main():
    a = sys.argv[1:]
    inclusive = "--inclusive" in a
    top = int(a[a.index("--top") + 1]) if "--top" in a else 40
    short, long_, dn, proc = a[0], a[1], float(a[2]), a[3]
    total, d = per_call(short, long_, dn, proc, inclusive)
    if "--vs" in a:
        i = a.index("--vs")
        total2, d2 = per_call(a[i + 1], a[i + 2], dn, proc, inclusive)
        print(f"{proc}: {total:.0f} -> {total2:.0f} instructions per call ({total2 - total:+.0f})")
        diff = {k: d2.get(k, 0) - d.get(k, 0) for k in set(d) | set(d2)}
        for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
            print(f"{v:+9.0f}  {d.get(k, 0):8.0f} -> {d2.get(k, 0):8.0f}  {k[:150]}")
        return
    print(f"{proc}: {total:.0f} instructions per call")
    for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v:9.0f}  {k[:160]}")

main()
