#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# TCP between two guests: iperf3 with TSO on and off (same boot) and with
# 1, 2, 4 queue pairs, VM1 in passthrough and in strict IOMMU mode
# (selftests/bench/tcp_pairs.sh in each boot).  Over the vhost-pci path
# (A), and with VPCI_BENCH_PATHS="vhost-pci dpdk-retry" also over DPDK testpmd
# (B: io forwarding with retry between two vhost-user ports, as DPDK's
# vhost sample switches retry, so that a burst waits for the other guest's
# RX ring, or for the answer to an IOTLB miss, instead of being dropped:
# every 50 us for up to 50 ms, selftests/topologies/testpmd-io-retry.cmds;
# VM2 an ordinary virtio-net guest without a vIOMMU).  B's vhost ports offer TSO
# and keep the offload flags through io forwarding (tso=1,
# legacy-ol-flags=1; without them a 64 KiB TSO frame was not carried:
# iperf3 over B with TSO on moved 0.05 Mbit/s), and both paths run with
# TSO on and off on both guests.  Prints one line per run and tables of
# medians with min and max over the rounds (and A/B when both paths ran); the host's
# steal time over each boot and the load average at its end go to
# OUTDIR/host.txt.
#   scripts/bench-tcp.sh [OUTDIR]     default build/bench-tcp
# Knobs: VPCI_BENCH_SECONDS, VPCI_BENCH_ROUNDS (runs of each kind within a
# boot), VPCI_BENCH_BOOTS (default 1: boots of each path and mode, the
# paths' order alternating over boots, ABBA; with 3 or more, every A/B
# ratio gets a 95 % bootstrap interval over boots), VPCI_BENCH_STREAMS (a list,
# default "4"), VPCI_BENCH_PAIRS (A's wired pairs, default 4),
# VPCI_BENCH_IOMMUS ("pt strict"), VPCI_BENCH_SMP (A's vCPUs per guest,
# default 2; B's guests have 1), VPCI_BENCH_PATHS ("vhost-pci"),
# VPCI_BENCH_PIN (a CPU list for every QEMU and the backend, testpmd's
# forwarding lcore on CPU 1, as make bench pins; default: not pinned).
# For A against B on equal terms: VPCI_BENCH_PAIRS=1 VPCI_BENCH_SMP=1
# VPCI_BENCH_PIN=0 VPCI_BENCH_PATHS="vhost-pci dpdk-retry".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${VPCI_BUILD:-$repo/build}/bench-tcp}
pairs=${VPCI_BENCH_PAIRS:-4}
smp=${VPCI_BENCH_SMP:-2}
export VPCI_PIN_CPUS=${VPCI_BENCH_PIN:-}
mkdir -p "$out"
: >"$out/tcp.jsonl"
boots=${VPCI_BENCH_BOOTS:-1}
[[ $boots =~ ^[1-9][0-9]*$ ]] || { echo "bench-tcp: VPCI_BENCH_BOOTS must be a positive number, not '$boots'" >&2; exit 2; }
# host_steal: the host's steal time so far, all CPUs, in clock ticks
# (/proc/stat's "cpu" line, 8th value).
host_steal()
{
	awk '$1 == "cpu" { print $9; exit }' /proc/stat
}

failed=0
: >"$out/host.txt"
for ((boot = 1; boot <= boots; boot++)); do
m=0
for mode in ${VPCI_BENCH_IOMMUS:-pt strict}; do
	case $mode in
	pt) iommu=iommu=pt ;;
	strict) iommu=iommu.strict=1 ;;
	*) echo "bench-tcp: unknown IOMMU mode $mode (pt, strict)" >&2; exit 2 ;;
	esac
	read -r -a paths <<<"${VPCI_BENCH_PATHS:-vhost-pci}"
	# AB, then BA in the next mode and in the next boot of this mode
	# (ABBA over boots): drift falls on both.
	if [ $(((boot - 1 + m++) % 2)) = 1 ]; then
		rev=()
		for ((i = ${#paths[@]} - 1; i >= 0; i--)); do rev+=("${paths[$i]}"); done
		paths=("${rev[@]}")
	fi
	for path in "${paths[@]}"; do
		case $path in
		vhost-pci)
			args=(--var "queues=$pairs" --var "vectors=$((2 * pairs + 1))" --var vm1_mq=on
			      --var "vm1_smp=$smp" --var "vm2_smp=$smp")
			tso=${VPCI_BENCH_TSO:-on off}
			echo "bench-tcp: $mode, vhost-pci, $pairs pairs wired, both guests $smp vCPUs"
			;;
		dpdk-retry)
			args=(--topology vm1dpdkvm2 --var vm2_viommu= --var vm2_viommu_cmdline=
			      --var vm2_iommu_platform=off
			      --var "fwd_cmds=$repo/selftests/topologies/testpmd-io-retry.cmds"
			      --var "vhost_args=,tso=1,legacy-ol-flags=1")
			tso=${VPCI_BENCH_TSO:-on off}
			echo "bench-tcp: $mode, dpdk-retry (testpmd io retry, vhost ports with TSO), both guests 1 vCPU"
			;;
		*) echo "bench-tcp: unknown path $path (vhost-pci, dpdk-retry)" >&2; exit 2 ;;
		esac
		rc=0
		st0=$(host_steal)
		VPCI_BENCH_IOMMU=$mode VPCI_BENCH_PATH=$path VPCI_BENCH_TSO=$tso \
			"$repo/selftests/vm/run.py" --var "iommu=$iommu" "${args[@]}" \
			"$repo/selftests/bench/tcp_pairs.sh" >"$out/$mode-$path-$boot.log" 2>&1 || rc=$?
		sed -n "s/^# TCP {/{\"boot\": $boot, /p" "$out/$mode-$path-$boot.log" | tee -a "$out/tcp.jsonl"
		# What else ran on this machine during the boot: the hypervisor's
		# steal time and the load average at its end.
		echo "bench-tcp: $mode $path boot $boot: host steal $(awk -v t="$(($(host_steal) - st0))" \
			-v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }') s," \
			"load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/host.txt"
		# A run that carried nothing is a result too: say so, go on,
		# and fail at the end.
		[ $rc -eq 0 ] || {
			echo "bench-tcp: $mode $path boot $boot failed (exit $rc), see $out/$mode-$path-$boot.log" >&2
			failed=$((failed + 1))
		}
	done
done
done
python3 - "$out/tcp.jsonl" "$repo/scripts/bench-report.py" <<'PY'
import collections, importlib.util, json, statistics, sys
spec = importlib.util.spec_from_file_location("bench_report", sys.argv[2])
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)
runs = collections.defaultdict(list)
by_boot = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = (r.get("path", "vhost-pci"), r["iommu"], r["dir"], r["pairs"], r.get("streams", 4), r["tso"])
    runs[k].append(r["mbps"])
    by_boot[k][r.get("boot", 1)].append(r["mbps"])
keys = sorted(runs)
fmt = lambda v: f"{statistics.median(v):.0f} ({min(v)}-{max(v)})" if v and None not in v else "n/a"
good = lambda v: v and None not in v and statistics.median(v) > 0
print("\n| path | IOMMU | direction | pairs | streams | TSO on Mbit/s | TSO off Mbit/s | on/off |")
print("|---|---|---|---|---|---|---|---|")
for path, iommu, d, p, st in sorted({k[:5] for k in keys}):
    on, off = runs.get((path, iommu, d, p, st, "on")), runs.get((path, iommu, d, p, st, "off"))
    ratio = f"{statistics.median(on) / statistics.median(off):.2f}" if good(on) and good(off) else "—"
    print(f"| {path} | {iommu} | {d} | {p} | {st} | {fmt(on) if on else '—'} | "
          f"{fmt(off) if off else '—'} | {ratio} |")
if {k[0] for k in keys} >= {"vhost-pci", "dpdk-retry"}:
    print("\nA (vhost-pci, one pair) against B (DPDK testpmd io retry, its vhost ports with "
          "TSO); medians over rounds:\n")
    print(f"A/B: with {report.BOOT_MIN_ROUNDS} boots or more, the median over boots of the "
          "ratio of a boot's medians (A's and B's boots paired in ABBA order) and, in brackets, "
          "its 95 % percentile bootstrap interval; with fewer, the ratio of the medians over "
          "all runs, without an interval.\n")
    print("| IOMMU | direction | streams | A TSO on | B TSO on | A TSO off | B TSO off | "
          "A on / B on | A off / B off |")
    print("|---|---|---|---|---|---|---|---|---|")
    for iommu, d, st in sorted({(k[1], k[2], k[4]) for k in keys}):
        cols, ratios = [], []
        for tso in ("on", "off"):
            ka, kb = ("vhost-pci", iommu, d, 1, st, tso), ("dpdk-retry", iommu, d, 1, st, tso)
            a, b = runs.get(ka), runs.get(kb)
            cols += [fmt(a) if a else "—", fmt(b) if b else "—"]
            if not (good(a) and good(b)):
                ratios.append("—")
                continue
            per_boot = {i: [statistics.median(v) / statistics.median(by_boot[kb][i])]
                        for i, v in by_boot[ka].items()
                        if good(v) and good(by_boot[kb].get(i))}
            # The point and its interval are of the same statistic.
            ci = report.fmt_ci(per_boot)
            ratios.append(ci if ci[:1].isdigit() else
                          f"{statistics.median(a) / statistics.median(b):.2f}")
        print(f"| {iommu} | {d} | {st} | " + " | ".join(cols + ratios) + " |")
PY
[ "$failed" -eq 0 ] || { echo "bench-tcp: $failed boot(s) had a run that carried nothing or failed" >&2; exit 1; }
