#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR MIT
# Host-only comparison (no VMs): the same front-end, vpci-sim, against
#   A' vhost-pci-core  vpci-hostdp: the driver's ring/IOTLB core as a
#                      vhost-user back-end, polling thread on FWD_CPU
#   B' dpdk-vhost-pmd  dpdk-testpmd io forwarding, one vhost port (as in
#                      scripts/sim-dpdk.sh), forwarding lcore on FWD_CPU
# Both reflect every frame back.  The simulator runs on SIM_CPU; so do
# DPDK's main lcore and vpci-hostdp's control thread.  Matrix: IOMMU off
# (identity), transient (every buffer mapped before it is posted and
# unmapped after use, mappings pushed: DPDK drops frames on a miss), pool
# (static pool pushed page by page plus EXTRA_MAPPINGS more pages: about
# 1900 4 KiB IOTLB entries), frames of 64 and 1500 bytes, ITERS rounds; in
# each round every configuration runs A' and B' back to back, the one
# going first alternating.  Each run is a fresh device process, unpaced,
# poll mode, DURATION seconds of sending.
#
# Besides frames/s (which the simulator may set, not the device), each
# device's busy time per frame: vpci-hostdp's busy_ns (its polling turns
# that found work) over the frames it took, testpmd's cycles of the bursts
# that received something (--record-core-cycles) over its received frames,
# at its TSC clock (two TSC reads a burst, as vpci-hostdp reads its clock
# twice a turn for busy_ns).  A row is simulator-bound when both devices
# were busy less than half of the run: then only the busy time per frame
# measures them.
#
#   scripts/bench-host.sh OUTDIR
#
# Writes OUTDIR/host.json ({"memcpy_gbytes_per_s", "runs": [...]}), the
# simulator's summaries and logs under OUTDIR/runs/, and prints a table
# with the A'/B' ratios.  Exit 0 when every run left a summary (frames
# lost by a device are data), 1 when a run did not start or wrote no
# summary, 4 when dpdk-testpmd is missing.
# Environment: ITERS (3), DURATION (3), EXTRA_MAPPINGS (1400), SIM_CPU (0),
# FWD_CPU (1), TESTPMD (dpdk-testpmd), VPCI_BUILD (build/).
set -u
OUT=${1:?usage: bench-host.sh OUTDIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${VPCI_BUILD:-$REPO/build}/userspace
SIM=$BIN/vpci-sim
HOSTDP=$BIN/vpci-hostdp
BENCH=$BIN/vpci-bench-core
TESTPMD=${TESTPMD:-dpdk-testpmd}
ITERS=${ITERS:-3}
DURATION=${DURATION:-3}
EXTRA_MAPPINGS=${EXTRA_MAPPINGS:-1400}
SIM_CPU=${SIM_CPU:-0}
FWD_CPU=${FWD_CPU:-1}

for b in "$SIM" "$HOSTDP" "$BENCH"; do
	[ -x "$b" ] || { echo "bench-host: $b missing (make userspace)"; exit 1; }
done
if ! command -v "$TESTPMD" >/dev/null; then
	echo "bench-host: SKIP: $TESTPMD not installed (apt-get install dpdk)"
	exit 4
fi
mkdir -p "$OUT/runs" || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vpcibench.XXXXXX")
DEV=
stop_dev() {
	[ -n "$DEV" ] || return 0
	kill -TERM -- "-$DEV" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$DEV" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$DEV" 2>/dev/null
	wait "$DEV" 2>/dev/null
	DEV=
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	stop_dev
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

policy_args() {
	case $1 in
	off) echo "--iommu-policy identity" ;;
	transient) echo "--iommu-policy transient --iotlb-push" ;;
	pool) echo "--iommu-policy static-pool --iotlb-push --push-pages --extra-mappings $EXTRA_MAPPINGS" ;;
	esac
}

failed=0 n=0
MANIFEST=$OUT/runs/manifest.tsv
: >"$MANIFEST"

# run_one PATH IOMMU SIZE ITER
run_one() {
	local path=$1 iommu=$2 size=$3 iter=$4
	local tag="$iter-$iommu-$size-$path"
	local sock=$TMP/$tag.sock json=$OUT/runs/$tag.json log=$OUT/runs/$tag
	n=$((n + 1))
	rm -f "$json"
	if [ "$path" = vhost-pci-core ]; then
		setsid timeout -k 2 $((DURATION + 60)) "$HOSTDP" -s "$sock" --cpu "$FWD_CPU" \
			--log-level warn --stats-json "$log.device.json" >"$log.device.log" 2>&1 &
	else
		setsid timeout -k 2 $((DURATION + 60)) "$TESTPMD" --no-huge -m 1024 --no-pci \
			--file-prefix="vpcibench$$-$n" --vdev "net_vhost0,iface=$sock,iommu-support=1" \
			--lcores="0@$SIM_CPU,1@$FWD_CPU" -- --stats-period 1 --forward-mode=io \
			--nb-cores=1 --record-core-cycles </dev/null >"$log.device.log" 2>&1 &
	fi
	DEV=$!
	for _ in $(seq 200); do
		[ -S "$sock" ] && break
		kill -0 "$DEV" 2>/dev/null || break
		sleep 0.05
	done
	if [ ! -S "$sock" ]; then
		echo "run $tag: $path did not start (log: $log.device.log)"
		tail -5 "$log.device.log"
		stop_dev
		failed=1
		return
	fi
	# shellcheck disable=SC2046
	timeout -k 2 $((DURATION + 60)) taskset -c "$SIM_CPU" "$SIM" -q -s "$sock" \
		--size "$size" --duration "$DURATION" -n 1000000000 $(policy_args "$iommu") \
		--json "$json" >"$log.sim.log" 2>&1
	local rc=$?
	stop_dev
	if [ ! -s "$json" ]; then
		echo "run $tag: no summary (vpci-sim exit $rc, log: $log.sim.log)"
		tail -5 "$log.sim.log"
		failed=1
		return
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$iommu" "$size" "$iter" "$json" \
		"$log.device.json" >>"$MANIFEST"
	printf '  %-15s %-9s %4s B  iter %s: %s\n' "$path" "$iommu" "$size" "$iter" \
		"$(grep -m1 'rx:' "$log.sim.log" | sed 's/^ *//')"
}

# The physical ceiling of the polling CPU: memcpy of 1 MiB blocks.
echo "memcpy bandwidth (vpci-bench-core BM_Memcpy/1048576 on CPU $FWD_CPU)"
taskset -c "$FWD_CPU" "$BENCH" --benchmark_filter='^BM_Memcpy/1048576$' \
	--benchmark_min_time=0.5 --benchmark_format=json >"$OUT/runs/memcpy.json" 2>"$OUT/runs/memcpy.log" ||
	{ echo "bench-host: vpci-bench-core failed"; cat "$OUT/runs/memcpy.log"; exit 1; }

start=$(date +%s)
for iter in $(seq "$ITERS"); do
	echo "round $iter of $ITERS"
	for iommu in off transient pool; do
		for size in 64 1500; do
			if [ $((iter % 2)) = 1 ]; then
				run_one vhost-pci-core "$iommu" "$size" "$iter"
				run_one dpdk-vhost-pmd "$iommu" "$size" "$iter"
			else
				run_one dpdk-vhost-pmd "$iommu" "$size" "$iter"
				run_one vhost-pci-core "$iommu" "$size" "$iter"
			fi
		done
	done
done
echo "$n runs in $(($(date +%s) - start)) s"

python3 - "$OUT" "$MANIFEST" "$OUT/runs/memcpy.json" <<'EOF' || failed=1
import json, re, statistics, sys

out, manifest, memcpy_file = sys.argv[1:4]
bench = json.load(open(memcpy_file))
bps = [b["bytes_per_second"] for b in bench["benchmarks"] if b.get("run_type") != "aggregate"]
memcpy = bps[0] / 1e9
# testpmd --record-core-cycles, at exit: cycles of the bursts that received.
CYCLES = re.compile(r"CPU cycles/packet=([\d.]+) \(total cycles=(\d+) / total \w+ "
                    r"packets=(\d+)\) at (\d+) MHz")


def busy(path, dev, log, seconds):
    """(busy ns per frame, busy share of the run) of a device, or (None, None)."""
    try:
        if path == "vhost-pci-core":
            d = json.load(open(dev))
            taken = sum(q["packets"] for q in d["queues"] if q["index"] % 2)
            if not taken or not d["active_ns"]:
                return None, None
            return d["busy_ns"] / taken, d["busy_ns"] / d["active_ns"]
        m = CYCLES.search(open(log, errors="replace").read())
        if not m or not int(m.group(3)) or not seconds:
            return None, None
        mhz = int(m.group(4))
        return float(m.group(1)) * 1e3 / mhz, int(m.group(2)) / (mhz * 1e6) / seconds
    except (OSError, ValueError, KeyError):
        return None, None


runs = []
for line in open(manifest):
    path, iommu, size, it, f, dev = line.rstrip("\n").split("\t")
    j = json.load(open(f))
    size, it = int(size), int(it)
    pps = float(j["rx"]["pps"])
    ns, share = busy(path, dev, dev[:-len(".device.json")] + ".device.log",
                     float(j["seconds"]))
    runs.append({"path": path, "iommu": iommu, "size": size, "iter": it,
                 "pps": pps, "gbps": pps * size * 8 / 1e9,
                 "sent": int(j["tx"]["sent"]), "received": int(j["rx"]["unique"]),
                 "lost": int(j["rx"]["lost"]), "corrupt": int(j["rx"]["corrupt"]),
                 "busy_ns_per_frame": ns, "busy_share": share})
json.dump({"memcpy_gbytes_per_s": memcpy, "runs": runs}, open(out + "/host.json", "w"), indent=1)

A, B = "vhost-pci-core", "dpdk-vhost-pmd"
print(f"\nmemcpy (1 MiB blocks): {memcpy:.2f} GB/s\n")
hdr = (f"{'iommu':<10}{'size':>5}  {'A: vhost-pci-core kpps':>24}  {'B: dpdk-vhost-pmd kpps':>24}"
       f"  {'A lost':>7} {'B lost':>7}  {'A/B min':>7} {'median':>7} {'max':>7}"
       f"  {'busy ns/frame A':>15} {'B':>6} {'A/B':>5}  {'busy A':>6} {'B':>4}")
print(hdr)
print("-" * len(hdr))
def fmt(v):
    if not v:
        return "-"
    return f"{statistics.median(v)/1e3:.1f} ({min(v)/1e3:.1f}-{max(v)/1e3:.1f})"
def med(rs, key):
    v = [r[key] for r in rs if r[key] is not None]
    return statistics.median(v) if v else None
for iommu in ("off", "transient", "pool"):
    for size in (64, 1500):
        sel = lambda p: {r["iter"]: r for r in runs
                         if r["path"] == p and r["iommu"] == iommu and r["size"] == size}
        a, b = sel(A), sel(B)
        ratios = [a[i]["pps"] / b[i]["pps"] for i in sorted(a) if i in b and b[i]["pps"] > 0]
        rs = (f"{min(ratios):7.2f} {statistics.median(ratios):7.2f} {max(ratios):7.2f}"
              if ratios else f"{'-':>7} {'-':>7} {'-':>7}")
        an, bn = med(a.values(), "busy_ns_per_frame"), med(b.values(), "busy_ns_per_frame")
        ash, bsh = med(a.values(), "busy_share"), med(b.values(), "busy_share")
        nsr = f"{an / bn:5.2f}" if an and bn else f"{'-':>5}"
        pct = lambda v: f"{v * 100:3.0f}%" if v is not None else "   -"
        print(f"{iommu:<10}{size:>5}  {fmt([r['pps'] for r in a.values()]):>24}  "
              f"{fmt([r['pps'] for r in b.values()]):>24}  "
              f"{sum(r['lost'] for r in a.values()):>7} {sum(r['lost'] for r in b.values()):>7}  {rs}"
              f"  {an or 0:15.0f} {bn or 0:6.0f} {nsr}  {pct(ash):>6} {pct(bsh):>4}")
bad = [r for r in runs if r["corrupt"]]
if bad:
    print(f"\nCORRUPT frames in {len(bad)} run(s): " +
          ", ".join(f"{r['path']} {r['iommu']} {r['size']} iter {r['iter']}" for r in bad))
print(f"\npps: frames back at the simulator per second (median (min-max) of the rounds); "
      f"A/B: per-round ratios;\nbusy ns/frame: the device's time in polls that found work "
      f"per frame it took (A: vpci-hostdp busy_ns,\nB: testpmd --record-core-cycles); busy: "
      f"that time's share of the run (under 50 % for both:\nsimulator-bound, the front-end "
      f"sets the rate).\n{out}/host.json")
EOF
exit $failed
