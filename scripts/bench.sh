#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: (i) the driver core micro-benchmark and its instructions
# per frame (scripts/bench-insn.py), (ii) the host-only
# matrix (scripts/bench-host.sh, when this tree has it), (iii) the VM-to-VM
# matrix (scripts/bench-vm.sh), (iv) one round of it again with the
# guests' instructions counted (BENCH_INSN_PASS=0: not), then
# docs/benchmarks.md and docs/bench/*.png from what this run printed
# (scripts/bench-report.py).
#
# usage: scripts/bench.sh [--smoke | --retry] OUTDIR
#   --smoke  `make bench-smoke`: one short boot of each path (IOMMU pt, 64 B,
#            both directions), the report into OUTDIR (docs/ untouched),
#            and fail unless both paths moved traffic and the plots exist.
#   --retry  `make bench-retry`: only (iii), with B-retry as path B (testpmd
#            io forwarding with retry), into docs/benchmarks-retry.md and
#            docs/bench-retry/*.png (the bench-vm.sh knobs apply).
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
smoke=0 retry=0
if [ "${1:-}" = --smoke ]; then
	smoke=1
	shift
elif [ "${1:-}" = --retry ]; then
	retry=1
	shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--smoke | --retry] OUTDIR" >&2; exit 2; }
out=$1
us=${VPCI_BUILD:-$repo/build}/userspace
report="$repo/scripts/bench-report.py"
rc=0
t0=$(date +%s)
rm -rf "$out"
mkdir -p "$out"
# The machine, the commit and the knobs the caller gave (before the
# defaults below are exported).
"$report" env "$out" || exit 1
# Equal footing: every guest's QEMU and the backend on CPU 0, testpmd's
# forwarding lcore alone on CPU 1 (A leaves it idle); BENCH_PIN= (empty)
# is the shared variant.  B's VM2 without a vIOMMU, as A's VM2
# (BENCH_B_VM2_VIOMMU=1 puts it behind one in VM1's mode).
export BENCH_PIN=${BENCH_PIN-0}
export BENCH_B_VM2_VIOMMU=${BENCH_B_VM2_VIOMMU:-0}

if [ $retry -eq 1 ]; then
	echo "== (iii) VM to VM: vhost-pci (A) against DPDK testpmd with io retry (B-retry)"
	BENCH_PATHS="vhost-pci dpdk-retry" "$repo/scripts/bench-vm.sh" "$out" || rc=1
	echo "== report: docs/benchmarks-retry.md, docs/bench-retry/*.png"
	"$report" report "$out" --b-path dpdk-retry --doc "$repo/docs/benchmarks-retry.md" \
		--plots "$repo/docs/bench-retry" --elapsed $(($(date +%s) - t0)) || rc=1
	exit $rc
fi

if [ $smoke -eq 0 ]; then
	echo "== (i) driver core micro-benchmark"
	"$us/vpci-bench-core" --benchmark_min_time=0.5 \
		--benchmark_out="$out/core.json" --benchmark_out_format=json || rc=1
	echo "== (i) driver core: instructions per frame (callgrind)"
	"$repo/scripts/bench-insn.py" --json "$out/insn.json" || rc=1

	echo "== (ii) host-only matrix"
	if [ -x "$repo/scripts/bench-host.sh" ]; then
		"$repo/scripts/bench-host.sh" "$out"
		case $? in
		0) ;;
		4) echo "host-only matrix skipped (bench-host.sh exit 4)" ;;
		*) rc=1 ;;
		esac
	else
		echo "not run: scripts/bench-host.sh is not in this tree"
	fi
fi

echo "== (iii) VM to VM: vhost-pci (A) against DPDK testpmd (B)"
if [ $smoke -eq 1 ]; then
	# The smoke checks the instruction counter too (BENCH_INSN=0: not).
	BENCH_INSN=${BENCH_INSN:-1} \
	BENCH_ROUNDS=1 BENCH_IOMMU=pt BENCH_SIZES=64 BENCH_SECONDS=2 BENCH_RTT=50 \
		"$repo/scripts/bench-vm.sh" "$out" || rc=1
	echo "== report (into $out)"
	"$report" report "$out" --doc "$out/benchmarks.md" --plots "$out/plots" \
		--elapsed $(($(date +%s) - t0)) --require-traffic \
		$([ "${BENCH_NDR:-1}" = 0 ] || echo --require-ndr) >"$out/report.txt" || rc=1
	grep -A 10 '^## Headline' "$out/report.txt"
	# The guest-instruction counter worked: a figure for each path (A's
	# columns come first, B's last; "—" where a path had none).
	if [ "${BENCH_INSN:-1}" != 0 ] &&
		! grep -A 9 '^### Guest instructions per packet' "$out/benchmarks.md" |
			grep -Eq '^\| pt \|.*\| [0-9,]+ \| [0-9,]+ \| [0-9,]+ \| [0-9,]+ \| [0-9,]+ \| [0-9,]+ \|$'; then
		echo "bench-smoke: no guest instruction counts (VPCI_QEMU_INSN, build/qemu/vpci-insn.so)"
		rc=1
	fi
	echo "bench-smoke: $([ $rc -eq 0 ] && echo ok || echo FAILED) ($out)"
	exit $rc
fi
"$repo/scripts/bench-vm.sh" "$out" || rc=1

# Guest instructions per packet, in a pass of their own: the counting
# plugin slows guest code, and A's switching is guest code, B's is not, so
# counting during the matrix would bias its throughput against A.  Counts
# move little with the host's load, so one round does (BENCH_INSN_PASS=0:
# skip it; BENCH_INSN=1 counts during the matrix instead).
if [ "${BENCH_INSN_PASS:-1}" != 0 ] && [ "${BENCH_INSN:-0}" != 1 ]; then
	echo "== (iv) guest instructions per packet: one counting round"
	BENCH_INSN=1 BENCH_ROUNDS=1 BENCH_NDR=0 BENCH_RTT=10 \
		"$repo/scripts/bench-vm.sh" "$out/insn-pass" || rc=1
fi

echo "== report: docs/benchmarks.md, docs/bench/*.png"
"$report" report "$out" --doc "$repo/docs/benchmarks.md" --plots "$repo/docs/bench" \
	--elapsed $(($(date +%s) - t0)) || rc=1
exit $rc
