#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# The datapath from a packet socket in VM2, tested in C (packet_test.c, on
# the kernel's kselftest_harness.h): ICMP echo requests built by the test
# go out through the driver, VM1's kernel answers, every reply is checked
# byte for byte; with and without PACKET_VNET_HDR (checksum offload asked
# for by the sender).  This script brings the link up, learns VM1's MAC and
# hands the test the addresses; then no fault may have been counted.
source "$(dirname "$0")/../lib.sh"

bin=$VPCI_BUILD/userspace/vpci-packet-test
[ -x "$bin" ] || { echo "1..0 # SKIP $bin is not built"; exit "$KSFT_SKIP"; }
vpci_up || { echo "1..0 # driver did not come up"; exit "$KSFT_FAIL"; }
ifname=$(vpci_netdev)
wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null ||
	{ echo "1..0 # VM1 does not answer ping"; exit "$KSFT_FAIL"; }
mac=$(ip neigh show "$VPCI_VM1_IP" dev "$ifname" | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
echo "# $ifname: VM1 $VPCI_VM1_IP at ${mac:-?}"
[ -n "$mac" ] || { echo "1..0 # no neighbour entry for VM1"; exit "$KSFT_FAIL"; }
VPCI_IFNAME=$ifname VPCI_PEER_MAC=$mac VPCI_PEER_IP=$VPCI_VM1_IP \
	VPCI_OWN_IP=${VPCI_VM2_ADDR%/*} "$bin"
rc=$?
faults_zero "$ifname" || { echo "# a fault counter moved"; rc=$KSFT_FAIL; }
dmesg_clean || { echo "# BUG/WARNING/Oops in dmesg"; rc=$KSFT_FAIL; }
exit $rc
