#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# The control plane with a real VM1 (strict IOMMU): vpci-nl status shows the
# running queues with VM1's ring sizes and notification wiring, the IOTLB
# dump shows the translations the rings use, ethtool -g reports VM1's ring
# sizes, IOTLB miss and invalidation events arrive while pinging once
# enabled; and debugfs fail_next_inv_ack withholds one INV_ACK so that the
# backend's timeout path runs: it counts a timeout, marks the device broken
# and every queue stops.
source "$(dirname "$0")/../lib.sh"

tap_begin 10

NL=$VPCI_BUILD/userspace/vpci-nl
has() {
	local t=$1 s
	shift
	for s in "$@"; do
		grep -qF -- "$s" <<<"$t" || { diag "missing: $s"; return 1; }
	done
}

check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up
dbg=/sys/kernel/debug/vhost_pci_net/$dev
wait_until 120 vpci_queues_started && wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 reachable"

out=$("$NL" status "$ifname")
echo "$out" | sed 's/^/# /'
# A queue waiting for the answer to a miss (strict IOMMU) is "stalled".
has "$out" "queue pairs 1/1" &&
	[ "$(grep -cE '^  queue [01] .*: (running|stalled), enabled, num 256,' <<<"$out")" = 2 ] &&
	grep -qE 'peer 0x3[0-9a-f]{8}$' <<<"$out" &&
	[ "$(grep -cE 'notify (direct|relay)' <<<"$out")" = 2 ]
log_test $? "status: both queues served, VM1's ring size 256, notifications wired, ACCESS_PLATFORM acked"

out=$(ethtool -g "$ifname")
[ "$(echo "$out" | awk '/^(RX|TX):/ {print $2}' | tr '\n' ' ')" = "32768 32768 256 256 " ]
log_test $? "ethtool -g: VM1's ring sizes"

out=$("$NL" iotlb "$ifname")
n=$(sed -n 's/^.*: \([0-9]*\) IOTLB entries$/\1/p' <<<"$out")
echo "$out" | head -n 6 | sed 's/^/# /'
[ "${n:-0}" -ge 1 ] && [ "$(grep -vc '^#' "$dbg/iotlb")" -ge 1 ]
log_test $? "IOTLB dump: $n entries (debugfs agrees it is not empty)"

"$NL" events "$ifname" iotlb &&
	"$NL" status "$ifname" | grep -q 'optional events: iotlb'
log_test $? "IOTLB events enabled"

rm -f /tmp/mon.out /tmp/mon.err
"$NL" monitor --count 6 --timeout 30 >/tmp/mon.out 2>/tmp/mon.err &
mon=$!
wait_until 10 grep -q monitoring /tmp/mon.err && ping -c 3 -i 0.3 -W 2 "$VPCI_VM1_IP" >/dev/null
wait $mon
rc=$?
head -n 6 /tmp/mon.out | sed 's/^/# /'
[ $rc -eq 0 ] && grep -q "^iotlb_miss $ifname queue [01] iova 0x" /tmp/mon.out &&
	grep -q "^iotlb_invalidate $ifname queue 65535 iova 0x" /tmp/mon.out
log_test $? "monitor: IOTLB misses and invalidations while pinging (strict IOMMU)"
"$NL" events "$ifname" none

status() { host vpci-ctl --control-socket "$VPCI_CTL" status; }
jget() { echo "$HOST_OUT" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
echo 1 > "$dbg/fail_next_inv_ack"
ping -c 3 -i 0.3 -W 1 "$VPCI_VM1_IP" >/dev/null
timed_out() { status && [ "$(jget 'd["iotlb"]["timeouts"] >= 1 and (d["backend_status"] & 8) != 0')" = True ]; }
wait_until 15 timed_out && [ "$(cat "$dbg/fail_next_inv_ack")" = 0 ] &&
	dmesg | grep -q 'error injection: withholding the ack of invalidation'
log_test $? "fail_next_inv_ack: one ack withheld, the backend timed out and marked the device broken"
diag "backend iotlb: $(jget 'd["iotlb"]'), status $(jget 'd["backend_status"]')"

stopped() { [ "$("$NL" status "$ifname" | grep -c ': stopped, ')" = 2 ]; }
wait_until 10 stopped && ! ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "broken device: both queues stopped, VM1 unreachable"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
