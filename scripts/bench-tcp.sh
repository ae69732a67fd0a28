#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TCP over the vhost-pci path between two guests: iperf3 with TSO on and
# off (same boot) and with 1, 2, 4 queue pairs, VM1 in passthrough and in
# strict IOMMU mode (selftests/bench/tcp_pairs.sh in each).  Prints one
# line per run and a table of medians with min and max over the rounds.
#   scripts/bench-tcp.sh [OUTDIR]     default build/bench-tcp
# Knobs: VPCI_BENCH_SECONDS, VPCI_BENCH_ROUNDS, VPCI_BENCH_STREAMS,
# VPCI_BENCH_PAIRS (wired pairs, default 4), VPCI_BENCH_IOMMUS ("pt strict"),
# VPCI_BENCH_SMP (vCPUs of each guest, default 2).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${VPCI_BUILD:-$repo/build}/bench-tcp}
pairs=${VPCI_BENCH_PAIRS:-4}
smp=${VPCI_BENCH_SMP:-2}
mkdir -p "$out"
: >"$out/tcp.jsonl"
for mode in ${VPCI_BENCH_IOMMUS:-pt strict}; do
	case $mode in
	pt) iommu=iommu=pt ;;
	strict) iommu=iommu.strict=1 ;;
	*) echo "bench-tcp: unknown IOMMU mode $mode (pt, strict)" >&2; exit 2 ;;
	esac
	echo "bench-tcp: $mode, $pairs pairs wired, both guests $smp vCPUs"
	rc=0
	VPCI_BENCH_IOMMU=$mode "$repo/selftests/vm/run.py" --var "iommu=$iommu" \
		--var "queues=$pairs" --var "vectors=$((2 * pairs + 1))" --var vm1_mq=on \
		--var "vm1_smp=$smp" --var "vm2_smp=$smp" "$repo/selftests/bench/tcp_pairs.sh" \
		>"$out/$mode.log" 2>&1 || rc=$?
	sed -n 's/^# TCP //p' "$out/$mode.log" | tee -a "$out/tcp.jsonl"
	[ $rc -eq 0 ] || { echo "bench-tcp: $mode run failed (exit $rc), see $out/$mode.log" >&2; exit 1; }
done
python3 - "$out/tcp.jsonl" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["iommu"], r["dir"], r["pairs"], r["tso"])].append(r["mbps"])
keys = sorted(runs)
print("\n| IOMMU | direction | pairs | TSO on Mbit/s | TSO off Mbit/s | on/off |")
print("|---|---|---|---|---|---|")
fmt = lambda v: f"{statistics.median(v):.0f} ({min(v)}-{max(v)})" if v and None not in v else "n/a"
for iommu, d, p in sorted({k[:3] for k in keys}):
    on, off = runs[(iommu, d, p, "on")], runs[(iommu, d, p, "off")]
    ratio = (f"{statistics.median(on) / statistics.median(off):.2f}"
             if on and off and None not in on + off and statistics.median(off) else "n/a")
    print(f"| {iommu} | {d} | {p} | {fmt(on)} | {fmt(off)} | {ratio} |")
PY
