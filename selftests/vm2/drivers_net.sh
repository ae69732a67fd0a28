#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# The kernel's own driver conformance tests, from linux-source-6.12
# (tools/testing/selftests/drivers/net: stats.py and queues.py, run in
# tree from build/linux-src-6.12, which `make ynl` extracts), against VM2's
# interface (NETIF).  Their KTAP results are passed through; each case the
# driver implements must pass, not skip: per-queue statistics
# (pkt_byte_sum, qstat_by_ifindex, check_down) and queue-get (get_queues).
# Pause frames and FEC are not a virtual link's (the tests expect XFAIL
# there), and addremove_queues skips with one pair: the queue count follows
# the pairs VM1 runs (ethtool -L is refused).  Kernels before 6.10 have no
# per-queue statistics: every case is reported as a skip.
source "$(dirname "$0")/../lib.sh"

tests=$VPCI_BUILD/linux-src-6.12/tools/testing/selftests/drivers/net
must=(stats.pkt_byte_sum stats.qstat_by_ifindex stats.check_down queues.get_queues)

tap_begin $((3 + ${#must[@]}))

if [ "$(printf '%s\n' 6.10 "$(uname -r)" | sort -V | head -n 1)" != 6.10 ]; then
	for t in driver stats.py queues.py "${must[@]}"; do
		log_test 4 "$t (kernel $(uname -r): no netdev per-queue statistics)"
	done
	tap_end
fi

# No VM1 in this topology: an address of our own, for ip to show.
VPCI_VM2_ADDR=${VPCI_VM2_ADDR:-169.254.100.2/16}
check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up

out=
for t in stats queues; do
	if [ -f "$tests/$t.py" ]; then
		o=$(NETIF=$ifname timeout 120 python3 "$tests/$t.py" 2>&1)
		rc=$?
	else
		o="no $tests/$t.py (make ynl)"
		rc=1
	fi
	echo "$o" | sed "s/^/# $t: /"
	out+=$o$'\n'
	log_test $rc "$t.py: no case failed (exit $rc)"
done

# The case's own line, with no comment (a "# SKIP" or "# XFAIL" is not a pass).
for c in "${must[@]}"; do
	echo "$out" | grep -qE "^ok [0-9]+ ${c//./\\.}\$"
	log_test $? "$c passed"
done

tap_end
