#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
# vpci-timeout: 240
#
# VM2's IOTLB is a cache of VM1's IOMMU that evicts round robin when full,
# so VM1's ring pages (the used ring, the avail ring's event field, the
# descriptor table) can go missing under a running queue through no fault
# of VM1's.  Such a miss must be a miss: the queue waits, the backend
# forwards it, VM1's IOMMU answers with an UPDATE, the queue goes on
# (issue 14 item 5, docs/datapath.md).  Here the driver is loaded with a
# small IOTLB (module parameter iotlb_entries) and VM1 is vpci-sim with a
# static pool and no pushed mappings: each of its ~520 ring and buffer
# pages reaches the driver through a miss answered with one 4 KiB page, and
# every answer evicts an entry once the table is full.
#
#  - the driver refuses iotlb_entries out of range, loads with the small one;
#  - a run of frames each way is lossless, in order, canaries intact;
#  - it evicted (iotlb_evictions > 0) and the vpci_iotlb_miss tracepoint
#    saw misses on VM1's used rings while the queues ran: the case under
#    test happened (the test cannot pass without it);
#  - no fault counted (fault_ring 0 on every queue);
#  - both queues are live (running or on a miss) late in the traffic;
#  - ip link set down/up during such traffic, traffic resumes, no fault,
#    and once VM1's traffic is done (VM1 still there) no queue is left
#    stalled; then another run is lossless.
#
# The driver before 3df8969 (a miss on a running queue's rings a ring
# fault) fails it: both queues ring-faulted within the first 20 frames
# ("rings no longer translate", vq0_{tx,rx}_fault_ring 1), every run lost
# its frames.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

entries=${VPCI_TEST_IOTLB_ENTRIES:-32}
# Paced, so that VM1 is still there when the queues' state is read near the
# end of the traffic (a run that got every frame back ends at once).
frames=${VPCI_TEST_EVICT_FRAMES:-8000}
rate=${VPCI_TEST_SIM_RATE:-1000}
[ "$rate" -gt 0 ] 2>/dev/null || rate=1000
tr=/sys/kernel/tracing

tap_begin 12

# iotlb_entries outside [16, 65536] fails the load with a message naming it.
refused()
{
	! insmod "$VPCI_KO" "iotlb_entries=$1" 2>/dev/null &&
		dmesg | grep -q "iotlb_entries=$1 out of range \[16, 65536\]"
}
refused 15 && refused 65537 && ! grep -q '^vhost_pci_net ' /proc/modules &&
	modinfo "$VPCI_KO" | grep -q '^parm: *iotlb_entries:Translations the private IOTLB'
log_test $? "modinfo documents iotlb_entries; 15 and 65537 refused at load, with the reason in dmesg"

sim_setup "iotlb_entries=$entries"
rc=$?
dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
dbg=/sys/kernel/debug/vhost_pci_net/$dev
cap=$(sed -n 's|^iotlb: [0-9]*/\([0-9]*\) entries$|\1|p' "$dbg/state")
diag "iotlb_entries $(cat /sys/module/vhost_pci_net/parameters/iotlb_entries 2>/dev/null)," \
	"debugfs capacity ${cap:-?}"
[ $rc -eq 0 ] && [ "$cap" = "$entries" ]
log_test $? "driver loaded with an IOTLB of $entries entries, $ifname up, tc mirred reflector"

# Every miss the driver posts, traced (netlink events are rate-limited).
echo 4096 > "$tr/buffer_size_kb"
echo > "$tr/trace"
echo 1 > "$tr/events/vhost_pci_net/vpci_iotlb_miss/enable"

# start NAME N RATE: a static-pool run of N frames each way at RATE frames/s
# (0: unpaced) in the background.
start()
{
	host timeout=150 bg "$1" vpci-sim $(sim_args) --iommu-policy static-pool \
		--mode interrupt --direction both -n "$2" --size 60-1514 --rate "$3" \
		--drain-ms 4000 --connect-wait-ms 5000 --watchdog-s 120 \
		--json "$VPCI_RUN/sim-$1.json"
}

# lossless NAME N: the run's summary (after "host wait") shows N frames each
# way back once, in order, uncorrupted, canaries intact.
lossless()
{
	local j=$VPCI_RUN/sim-$1.json

	[ -s "$j" ] || { diag "$1: no summary: $(echo "$HOST_OUT" | tail -n 3 | xargs)"; return 1; }
	sim_show "$j"
	jq -e --argjson n "$2" '.ok and .rx.unique == $n and .rx.lost == 0 and .rx.corrupt == 0 and
		.rx.duplicates == 0 and .rx.reordered == 0 and .canaries.ok' "$j" >/dev/null ||
		{ sim_explain "$j" "$drops0"; return 1; }
}

# ring_faults: vqN_{tx,rx}_fault_ring summed ("" if ethtool printed none).
ring_faults()
{
	ethtool -S "$ifname" | awk '$1 ~ /_fault_ring:$/ { n += $2; k++ } END { if (k) print n }'
}

# running: both queues running, as debugfs state shows them.
running()
{
	[ "$(grep -c '^queue [01]: running enabled=1 ' "$dbg/state")" = 2 ]
}

# live: both queues running or waiting on a miss (under constant eviction
# one of them mostly is), VM1's rings enabled: not broken, not stopped.
live()
{
	[ "$(grep -cE '^queue [01]: (running|stalled) enabled=1 ' "$dbg/state")" = 2 ]
}

# rings: "QUEUE PART LO HI" (decimal, HI exclusive) for each part of each
# queue's rings, from debugfs state while the queues run (or wait on a miss).
rings()
{
	local q num desc avail used

	while read -r q num desc avail used; do
		[ -n "$q" ] || continue
		echo "$q desc $((desc)) $((desc + 16 * num))"
		echo "$q avail $((avail)) $((avail + 6 + 2 * num))"
		echo "$q used $((used)) $((used + 6 + 8 * num))"
	done <<<"$(sed -n 's/^queue \([01]\): [a-z]* enabled=1 .* num=\([0-9]*\) desc=\(0x[0-9a-f]*\) avail=\(0x[0-9a-f]*\) used=\(0x[0-9a-f]*\) .*/\1 \2 \3 \4 \5/p' \
		"$dbg/state")"
}

# ring_misses RINGS: "QUEUE PART N" for each ring part: misses traced on it.
ring_misses()
{
	sed -n 's/.*vpci_iotlb_miss: .* iova=\(0x[0-9a-f]*\) .*/\1/p' "$tr/trace" |
		awk -v r="$1" 'BEGIN { n = split(r, l, "\n")
				       for (i = 1; i <= n; i++) { split(l[i], f, " "); k[i] = f[1] " " f[2]
						lo[i] = f[3] + 0; hi[i] = f[4] + 0; c[i] = 0 } }
			       { v = $1 + 0; for (i = 1; i <= n; i++) if (v >= lo[i] && v < hi[i]) c[i]++ }
			       END { for (i = 1; i <= n; i++) if (k[i] != " ") print k[i], c[i] }'
}

drops0=$(sim_drops)
ev0=$(sim_stat iotlb_evictions)
start first "$frames" "$rate"
started=$?
# The rings' addresses, once both queues run.
wait_until 30 live
r=$(rings)
[ -n "$r" ] || diag "no ring addresses: the queues never ran"
while read -r q part lo hi; do
	[ -z "$part" ] || diag "$(printf 'queue %s %s ring: %#x..%#x' "$q" "$part" "$lo" $((hi - 1)))"
done <<<"$r"
# Late in the traffic (VM2 sent back all but about three seconds' frames:
# each poll of a TCG guest under load may take a while, and VM1 leaves as
# soon as its last frame is back), thousands of evictions in: the queues
# must be live, not broken.  The lossless run then shows they ran on.
near_end() { [ "$(sim_stat vq0_tx_packets)" -ge $((frames - 3 * rate)) ]; }
ok=1
if [ $started -eq 0 ] && wait_until $((frames / rate + 30)) near_end; then
	wait_until 5 live && ok=0
	diag_lines "$(grep '^queue' "$dbg/state")"
fi
log_test $ok "late in the traffic (VM2 sent back $(sim_stat vq0_tx_packets) of $frames): both queues live (running or on a miss)"
host wait first
lossless first "$frames"
log_test $? "$frames frames each way through $entries IOTLB entries: lossless, in order, canaries intact"

ev1=$(sim_stat iotlb_evictions)
diag "iotlb_evictions $ev0 -> $ev1, iotlb_misses $(sim_stat iotlb_misses)," \
	"entries $(sim_stat iotlb_entries)"
isnum "$ev0" "$ev1" && [ "$ev1" -gt "$ev0" ]
log_test $? "the IOTLB evicted ($((ev1 - ev0)) entries)"

m=$([ -z "$r" ] || ring_misses "$r")
diag_lines "$(echo "$m" | awk '{ print "misses on queue " $1 " " $2 " ring: " $3 }')"
# VM1's used rings (both queues) missed while running: evicted under them.
[ "$(echo "$m" | awk '$2 == "used" && $3 > 0' | wc -l)" = 2 ]
log_test $? "both queues' used rings missed while the queues ran (evicted under them)"

rf=$(ring_faults)
diag "fault counters: $(ethtool -S "$ifname" | awk '$1 ~ /fault_/ && $2 != 0 { printf "%s %s ", $1, $2 }')"
[ "$rf" = 0 ] && faults_zero "$ifname"
log_test $? "no fault counted (fault_ring ${rf:-?})"

# ip link set down/up while frames flow under eviction: the link comes up
# and frames flow again (frames in flight while down may be dropped).
rx0=$(sim_stat vq0_rx_packets)
start second "$frames" "$rate"
flowing() { [ "$(sim_stat vq0_rx_packets)" -ge $((rx0 + 300)) ]; }
wait_until 30 flowing
ip link set dev "$ifname" down && sleep 0.5 && ip link set dev "$ifname" up &&
	ip -o link show dev "$ifname" | grep -q '[<,]UP[,>]'
updown=$?
rx1=$(sim_stat vq0_rx_packets)
moved() { [ "$(sim_stat vq0_rx_packets)" -ge $((rx1 + 500)) ]; }
ok=1
[ $updown -eq 0 ] && wait_until 20 live && wait_until 30 moved && ok=0
flows=$ok
[ $ok -eq 0 ] || diag_lines "$(grep '^queue' "$dbg/state")"
log_test $ok "ip link set down/up during the traffic: both queues live, frames flow again ($rx1 -> $(sim_stat vq0_rx_packets))"
# VM2 got VM1's last frame; VM1 stays for its drain (it waits for the
# frames VM2 dropped while down): idle queues must be running, not left
# waiting on a miss served long ago (kicks stay off then: seen, a stale
# wait after an avail ring miss).
all_in() { [ "$(sim_stat vq0_rx_packets)" -ge $((rx0 + frames)) ]; }
ok=1
[ $flows -eq 0 ] && wait_until $((frames / rate + 30)) all_in && wait_until 3 running && ok=0
diag_lines "$(grep '^queue' "$dbg/state")"
log_test $ok "VM1's traffic done, VM1 still there: both queues running, none left stalled"
host wait second
j=$VPCI_RUN/sim-second.json
[ -s "$j" ] && sim_show "$j"	# frames VM2 dropped while down count lost
rf=$(ring_faults)
[ "$rf" = 0 ] && faults_zero "$ifname"
log_test $? "no fault counted across the down/up (fault_ring ${rf:-?})"

drops0=$(sim_drops)
start third 2000 0
host wait third
lossless third 2000
log_test $? "after it: 2000 frames each way unpaced, lossless, $(sim_stat iotlb_evictions) evictions in all"

echo 0 > "$tr/events/vhost_pci_net/vpci_iotlb_miss/enable"
diag "dmesg: $(dmesg | grep -c 'no longer translates at') 'no longer translates at' lines" \
	"(rate-limited), $(dmesg | grep -c 'rings no longer translate$') 'rings no longer translate'"
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
