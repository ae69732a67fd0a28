#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# ICMP between VM2 (vhost-pci driver) and VM1 (virtio-net behind
# intel-iommu): each echo request crosses VM2's xmit into VM1's RX ring,
# each reply VM1's TX ring into VM2's NAPI.  Zero loss in every IOMMU mode.
source "$(dirname "$0")/../lib.sh"

tap_begin 7

check "insmod vhost_pci_net" insmod "$VPCI_KO"
dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
ifname=$(netdev_of "$dev")
ip addr add "$VPCI_VM2_ADDR" dev "$ifname"
ip link set dev "$ifname" up

started() { [ "$(dmesg | grep -c 'queue [01]: started')" -ge 2 ]; }
wait_until 120 started
log_test $? "both of VM1's virtqueues served"
dmesg | grep -E 'queue [01]: (started|rings)' | sed 's/^/# /'

# The first packets may wait for ARP and IOTLB misses; then no loss at all.
wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 answers ping"

out=$(ping -c 50 -i 0.05 -W 2 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/# /'
echo "$out" | grep -q ' 0% packet loss'
log_test $? "50 pings, zero loss"

host vm vm1 "ping -c 20 -i 0.05 -W 2 ${VPCI_VM2_ADDR%/*}"
echo "$HOST_OUT" | tail -n 2 | sed 's/^/# VM1: /'
echo "$HOST_OUT" | grep -q ' 0% packet loss'
log_test $? "VM1 -> VM2: 20 pings, zero loss"

ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/# /'
ethtool -S "$ifname" | awk '/fault/ && $2 != 0 { bad = 1 } END { exit bad }'
log_test $? "no datapath faults counted"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
