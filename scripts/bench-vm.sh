#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM-to-VM matrix of `make bench`:
#   path A "vhost-pci": VM1 virtio-net -> vpci-backend -> VM2's vhost_pci_net
#                       (topology vm1vm2)
#   path B "dpdk":      VM1 virtio-net -> dpdk-testpmd (io, two vhost ports)
#                       -> VM2 virtio-net (topology vm1dpdkvm2)
# in IOMMU passthrough and strict mode: one boot per (path, mode) per round,
# each running selftests/bench/vm2vm.sh (every size and direction in that
# boot).  A and B alternate, in ABBA order over rounds, so that drift of this
# shared machine falls on both.
#
# usage: scripts/bench-vm.sh OUTDIR
# Writes OUTDIR/vm/results.jsonl (the guests' BENCH records plus one "run"
# record a boot, with the host's steal time and load average) and keeps
# each boot's log there.  Knobs (environment):
#   BENCH_ROUNDS=5  BENCH_IOMMU="pt strict"  BENCH_SECONDS=3
#   BENCH_SIZES="64 1500"  BENCH_DIRS="vm1-vm2 vm2-vm1"  BENCH_RTT=100
#   BENCH_PATHS="vhost-pci dpdk"  BENCH_BOOT_TIMEOUT=600 (a path may also be
#   dpdk-retry, "B-retry": testpmd's io forwarding with retry, which waits
#   for VM2's RX ring instead of dropping a burst at once)
#   BENCH_PIN=0: CPU list for every guest's QEMU and the backend (testpmd
#   places its lcores itself: forwarding on CPU 1); empty: not pinned
#   BENCH_B_VM2_VIOMMU=0: B's VM2 without a vIOMMU (1: behind one, as VM1)
#   BENCH_NDR=1: also search each cell's zero-loss rate (0: skip it; knobs
#   BENCH_NDR_SECONDS=2 per probe, BENCH_NDR_STEPS=4 probes)
#   BENCH_INSN=0: 1 counts each guest's instructions with the project's TCG
#   plugin (build/qemu/vpci-insn.so, make tcg-plugin); off by default: it
#   slows guest code only, and A's switching is guest code, B's is not
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1/vm
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

rounds=${BENCH_ROUNDS:-5}
read -r -a modes <<<"${BENCH_IOMMU:-pt strict}"
read -r -a paths <<<"${BENCH_PATHS:-vhost-pci dpdk}"
limit=${BENCH_BOOT_TIMEOUT:-600}
export VPCI_BENCH_SECONDS=${BENCH_SECONDS:-3}
export VPCI_BENCH_SIZES=${BENCH_SIZES:-64 1500}
export VPCI_BENCH_DIRS=${BENCH_DIRS:-vm1-vm2 vm2-vm1}
export VPCI_BENCH_RTT=${BENCH_RTT:-100}
export VPCI_BENCH_NDR=${BENCH_NDR:-1}
export VPCI_BENCH_NDR_SECONDS=${BENCH_NDR_SECONDS:-2}
export VPCI_BENCH_NDR_STEPS=${BENCH_NDR_STEPS:-4}
export VPCI_QEMU_INSN=${BENCH_INSN:-0}
export VPCI_PIN_CPUS=${BENCH_PIN-0}

runner=
cleanup()
{
	[ -n "$runner" ] && kill "$runner" 2>/dev/null
	runner=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# host_steal: the host's steal time so far, all CPUs, in clock ticks (the
# "cpu" line of /proc/stat, 8th value): time a hypervisor below this
# machine ran something else while it wanted to run.
host_steal()
{
	awk '$1 == "cpu" { print $9; exit }' /proc/stat
}

# run_one PATH MODE ROUND: one boot, its records appended to $results
# (its "run" record with the host's steal time over the boot and the load
# average at its end).
run_one()
{
	local path=$1 mode=$2 round=$3 topo cmdline rc t0 st0 st1 log
	local vars=()
	case $path in
	vhost-pci) topo=vm1vm2; vars=(--var log_level=info) ;;
	dpdk | dpdk-retry)
		topo=vm1dpdkvm2
		[ "${BENCH_B_VM2_VIOMMU:-0}" = 1 ] ||
			vars=(--var vm2_viommu= --var vm2_viommu_cmdline= --var vm2_iommu_platform=off)
		[ "$path" = dpdk ] ||
			vars+=(--var "fwd_cmds=$repo/selftests/topologies/testpmd-io-retry.cmds")
		;;
	*) echo "unknown path $path" >&2; return 1 ;;
	esac
	case $mode in
	pt) cmdline=iommu=pt ;;
	strict) cmdline=iommu.strict=1 ;;
	*) echo "unknown IOMMU mode $mode" >&2; return 1 ;;
	esac
	log=$out/r$round-$path-$mode.log
	echo "bench-vm: round $round, $path, IOMMU $mode ($log)"
	t0=$(date +%s)
	st0=$(host_steal)
	st0=${st0:-0}
	# The runner kills its guests and services on its deadline and on
	# SIGTERM; timeout(1) is the second line of defence.
	VPCI_BENCH_IOMMU=$mode VPCI_BENCH_ROUND=$round VPCI_BENCH_PATH=$path \
		timeout -k 10 $((limit + 30)) "$repo/selftests/vm/run.py" --timeout "$limit" \
		--topology "$topo" --var "iommu=$cmdline" "${vars[@]}" \
		"$repo/selftests/bench/vm2vm.sh" >"$log" 2>&1 &
	runner=$!
	wait "$runner"
	rc=$?
	runner=
	sed -n 's/^# BENCH //p' "$log" >>"$results"
	st1=$(host_steal)
	grep -E '^not ok|^# vm[12]: kernel splat|^#   \[' "$log" | head -n 20 |
		jq -R . | jq -cs --arg path "$path" --arg mode "$mode" --argjson round "$round" \
			--argjson rc "$rc" --argjson s $(($(date +%s) - t0)) \
			--argjson steal "$((${st1:-0} - st0))" --argjson hz "$(getconf CLK_TCK || echo 100)" \
			--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
			'{kind: "run", path: $path, iommu: $mode, round: $round, rc: $rc,
			  seconds: $s, steal_s: ($steal / $hz), loadavg: $load, problems: .}' >>"$results"
	grep -E '^(ok|not ok) |^# (set up|measured) in' "$log" | sed 's/^/    /'
	echo "    exit status $rc after $(($(date +%s) - t0)) s"
	[ "$rc" -eq 0 ] || failed=$((failed + 1))
}

for round in $(seq "$rounds"); do
	order=("${paths[@]}")
	# ABBA: even rounds run the paths in reverse order.
	if [ $((round % 2)) -eq 0 ]; then
		order=()
		for ((i = ${#paths[@]} - 1; i >= 0; i--)); do
			order+=("${paths[$i]}")
		done
	fi
	for mode in "${modes[@]}"; do
		for path in "${order[@]}"; do
			run_one "$path" "$mode" "$round"
		done
	done
done

echo "bench-vm: $failed of $((rounds * ${#modes[@]} * ${#paths[@]})) boots failed; records in $results"
[ "$failed" -eq 0 ]
