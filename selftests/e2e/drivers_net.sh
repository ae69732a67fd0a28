#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# The kernel's own driver conformance tests, from linux-source-6.12
# (tools/testing/selftests/drivers/net: stats.py, queues.py and ping.py,
# run in tree from build/linux-src-6.12, which `make ynl` extracts),
# against VM2's interface (NETIF), with VM1 as the remote endpoint
# (REMOTE_TYPE=vpci: selftests/vm/remote_vpci.py runs the remote's
# commands in VM1 through the runner, several at once).  Their KTAP results
# are passed through; each case the driver implements must pass, not skip:
# per-queue statistics (pkt_byte_sum, qstat_by_ifindex, check_down),
# queue-get (get_queues) and ping.py's ICMP both ways over IPv4 and IPv6
# and TCP both ways (socat).  Pause frames and FEC are not a virtual link's
# (the tests expect XFAIL there), and addremove_queues skips with one pair:
# the queue count follows the pairs VM1 runs (ethtool -L is refused).
# Kernels before 6.10 have no per-queue statistics: every case is reported
# as a skip.
source "$(dirname "$0")/../lib.sh"

tests=$VPCI_BUILD/linux-src-6.12/tools/testing/selftests/drivers/net
must=(stats.pkt_byte_sum stats.qstat_by_ifindex stats.check_down queues.get_queues
      ping.test_v4 ping.test_v6 ping.test_tcp)
# ping.py first: stats.py's check_down takes the link down and up.
scripts=(ping stats queues)

tap_begin $((2 + ${#scripts[@]} + ${#must[@]}))

if [ "$(printf '%s\n' 6.10 "$(uname -r)" | sort -V | head -n 1)" != 6.10 ]; then
	for t in driver link "${scripts[@]/%/.py}" "${must[@]}"; do
		log_test 4 "$t (kernel $(uname -r): no netdev per-queue statistics)"
	done
	tap_end
fi

check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up

# IPv6 on both ends (no DAD: the addresses are usable at once), and the
# neighbours of both families resolved before ping.py's single pings with
# a 0.5 s deadline: a first packet waits for ARP/ND and, under TCG, for
# the IOTLB misses of VM1's fresh buffers.
v6_vm1=fd00:5650::1 v6_vm2=fd00:5650::2
# (kept when stats.py's check_down takes the link down and up)
sysctl -qw "net.ipv6.conf.$ifname.keep_addr_on_down=1"
ip -6 addr add "$v6_vm2/64" dev "$ifname" nodad
host vm vm1 "set -- /sys/bus/virtio/drivers/virtio_net/*/net/*; ip -6 addr add $v6_vm1/64 dev \${1##*/} nodad"
rc=$?
wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null || rc=1
wait_until 30 ping -6 -c 1 -W 1 "$v6_vm1" >/dev/null || rc=1
host vm vm1 "ping -c 1 -W 2 ${VPCI_VM2_ADDR%/*} && ping -6 -c 1 -W 2 $v6_vm2" || rc=1
log_test $rc "VM1 and VM2 reach each other over IPv4 and IPv6"

out=
for t in "${scripts[@]}"; do
	if [ -f "$tests/$t.py" ]; then
		o=$(NETIF=$ifname LOCAL_V4=${VPCI_VM2_ADDR%/*} REMOTE_V4=$VPCI_VM1_IP \
			LOCAL_V6=$v6_vm2 REMOTE_V6=$v6_vm1 REMOTE_TYPE=vpci REMOTE_ARGS=vm1 \
			timeout 120 python3 -u "$VPCI_REPO/selftests/vm/drivers_net.py" "$tests/$t.py" 2>&1)
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
