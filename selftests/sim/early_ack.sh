#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
# vpci-timeout: 300
#
# The security hinge: an invalidation completes for VM1 only once nothing in
# VM2 can still use the range.  vpci-sim's post-after-unmap fault maps an RX
# buffer page, unmaps it (the INVALIDATE acked) and only then posts it.  A
# correct driver misses on it, the miss goes unanswered and times out
# (vq0_tx_fault_miss_timeout), and the page's canaries stay intact.
#
# With debugfs stale_next_inv the driver acks invalidations but keeps their
# entries: the early ack the hinge forbids.  Through ivshmem, whose BAR is
# all of VM1's RAM, the frame then lands in the unmapped page and the
# simulator finds its canaries damaged: what catches such a driver.  On the
# vhost-pci device the backend removed the window before VM1's invalidation
# completed, so the same write reaches nothing and VM1's page stays intact
# although the driver misbehaved.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

tap_begin 7

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
devid=$(cat "/sys/bus/pci/devices/$dev/device")
knob=/sys/kernel/debug/vhost_pci_net/$dev/stale_next_inv

# The correct driver answers post-after-unmap with a miss timeout: a run
# waits for it twice over before it calls the queue drained (faults.sh).
miss_ms=$(cat /sys/module/vhost_pci_net/parameters/miss_timeout_ms)
drain=$((4000 + 2 * ${miss_ms:-2000}))

# run NAME [FAULT]: 1000 frames each way, the fault (if any) half way (an RX
# buffer posted then sits behind the ring's other 254: enough follow to reach it).
run()
{
	host timeout=$((60 + drain / 1000)) vpci-sim $(sim_args) --iommu-policy identity --mode interrupt \
		--direction both --size 60-1514 --rate 5000 --connect-wait-ms 5000 \
		--json "$VPCI_RUN/sim-$1.json" -n 1000 --drain-ms $drain ${2:+--fault $2}
	rc=$?
	j=$VPCI_RUN/sim-$1.json
	[ -s "$j" ] || { diag "$1: no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"; return 1; }
	diag_lines "$(jq -r '"\(.fault.name // "no fault"): \(.fault.outcome // "-"), canaries \(.canaries.ok) "
		+ "(\(.canaries.pages_checked) pages, damaged \(.canaries.damaged)), "
		+ "longest pause \(.longest_idle_ms) ms"' "$j")"
}

w0=$(sim_stat vq0_tx_fault_miss_timeout)
run correct post-after-unmap &&
	jq -e '.canaries.ok and .fault.outcome == "dropped"' "$j" >/dev/null &&
	[ $rc -eq 0 ] && [ "$(sim_stat vq0_tx_fault_miss_timeout)" -gt "$w0" ]
log_test $? "correct driver: the page unmapped before it was posted is never written (miss timed out, canaries intact)"

k0=$(dmesg | grep -c 'entries kept')
echo 1000 > "$knob"
run stale post-after-unmap
echo 0 > "$knob"
kept=$(( $(dmesg | grep -c 'entries kept') - k0 ))
diag "invalidations acked with their entries kept: $kept"
[ "$kept" -gt 0 ] && [ -s "$j" ]
log_test $? "stale_next_inv: invalidations acked early (entries kept)"

case $devid in
0x10f0)
	log_test 4 "ivshmem: the early ack is caught (not this device)"
	jq -e '.canaries.ok' "$j" >/dev/null
	log_test $? "vhost-pci device: VM1's unmapped page intact although the driver acked early"
	;;
*)
	jq -e '.canaries.ok == false and .canaries.damaged_pages > 0' "$j" >/dev/null
	log_test $? "ivshmem: the early ack is caught: the simulator finds the unmapped page written"
	log_test 4 "vhost-pci device checks (not this device)"
	;;
esac

# Stale entries are gone with the session: a reconnect flushes the IOTLB.
run after && jq -e '.ok and .rx.lost == 0' "$j" >/dev/null && [ $rc -eq 0 ]
log_test $? "after: reconnect, 1000 frames each way lossless"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
