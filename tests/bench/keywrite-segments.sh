#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
# Where a key write's time goes, from a system-wide syscall trace (perf, root):
# runs vaultbench with one key-write case, records every syscall for 1 s in
# the middle of it, and prints the median time between the seven messages of
# one write (the existence check and its reply, the update, the plugin's
# storage Put and Vault's reply, the plugin's reply and its arrival), matched
# by their sizes. Tracing adds a few µs per syscall: read the split, not the
# total. Diagnosis only; not part of make bench.
#
#   tests/bench/keywrite-segments.sh [PLUGIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
PLUGIN=${1:-$(pwd)/build/vault-plugin-secrets-byok}
command -v perf >/dev/null || { echo "keywrite-segments: needs perf (apt-get install linux-perf)" >&2; exit 1; }
make --no-print-directory build/vaultbench >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
KEY="sk-bench$(printf 'x%.0s' $(seq 1 48))"
build/vaultbench -plugin "$PLUGIN" -launches 1 -http=false -d 4s -rounds 1 -clients 1 \
    -setup "update:tenants/t1/keys/openai/production:{\"key_value\":\"$KEY\"}" \
    -spec "update:tenants/t2/keys/openai/production:{\"key_value\":\"$KEY\"}" >"$T/vb.out" 2>&1 &
VB=$!
sleep 10.5 # mount, then 4 s each of the floor and the config read: now inside the key writes
perf record -q -a -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -o "$T/perf.data" -- sleep 1 >/dev/null 2>&1
wait "$VB"
grep -m1 '^update .* 1 ' "$T/vb.out" || true
perf script -i "$T/perf.data" -F comm,tid,time,event,trace 2>/dev/null | python3 -c '
import re, statistics, sys
ev, pend = [], {}
for line in sys.stdin:
    m = re.match(r"\s*(\S+)\s+(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(.*)", line)
    if not m:
        continue
    comm, tid, t, kind, nr = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4), int(m.group(5))
    if kind == "enter":
        pend[tid] = t
        continue
    r = re.search(r"= (-?\d+)", m.group(6))
    ev.append((t, comm, nr, int(r.group(1)) if r else 0))
ev.sort()
# (process, syscall: 0 read, 1 write, 46 sendmsg; size range; name)
seq = [("vaultbench", 1, (200, 220), "existence check sent"),
       ("vault-plugin-se", 46, (62, 62), "its reply sent"),
       ("vaultbench", 1, (240, 270), "update sent"),
       ("vault-plugin-se", 46, (1700, 2100), "storage Put sent"),
       ("vaultbench", 1, (88, 88), "Put reply sent"),
       ("vault-plugin-se", 46, (560, 620), "update reply sent"),
       ("vaultbench", 0, (560, 620), "update reply read")]
its, cur = [], []
for t, comm, nr, ret in ev:
    p, n, (lo, hi), _ = seq[len(cur)]
    if comm.startswith(p) and nr == n and lo <= ret <= hi:
        cur.append(t)
        if len(cur) == len(seq):
            its.append(cur)
            cur = []
    elif cur and comm.startswith("vaultbench") and nr == 1 and 200 <= ret <= 220:
        cur = [t]
print("key writes traced:", len(its))
for j in range(1, len(seq)):
    d = statistics.median([(it[j] - it[j - 1]) * 1e6 for it in its]) if its else float("nan")
    print("  %-22s -> %-20s %5.0f us  (%s)" % (seq[j - 1][3], seq[j][3], d,
          "plugin" if seq[j][0].startswith("vault-plugin") else "stand-in"))
if its:
    print("  first to last: %.0f us" % statistics.median([(it[-1] - it[0]) * 1e6 for it in its]))
'
