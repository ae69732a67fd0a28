#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# ICMP between VM2 (vhost-pci driver) and VM1 (virtio-net behind
# intel-iommu): each echo request crosses VM2's xmit into VM1's RX ring,
# each reply VM1's TX ring into VM2's NAPI.  Zero loss in every IOMMU mode.
source "$(dirname "$0")/../lib.sh"

tap_begin 9

check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up

wait_until 120 vpci_queues_started
log_test $? "both of VM1's virtqueues served"
dmesg | grep -E 'queue [01]: (started|rings)' | sed 's/^/# /'

# The first packets may wait for ARP and IOTLB misses; then no loss at all.
wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 answers ping"

out=$(ping -c 50 -i 0.05 -W 2 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 50
log_test $? "50 pings, zero loss"

# Every echo missed in VM1's RX ring (strict) and was served: once idle,
# both queues are running, neither is left "stalled" on a served miss.
out=$("$VPCI_BUILD/userspace/vpci-nl" --json status 2>&1)
echo "$out" | grep -o '"state": *"[a-z]*"' | xargs | sed 's/^/# queue states: /'
[ "$(echo "$out" | grep -cE '"state": *"running"')" = 2 ]
log_test $? "idle after traffic: both queues running, none stalled"

# Idle gaps longer than the miss timeout (2 s): VM1 hands out the same
# IOVAs again, and a miss there must be a new miss, not an old one timed out.
out=$(ping -c 4 -i 2.5 -W 3 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 4
log_test $? "4 pings 2.5 s apart, zero loss"

host vm vm1 "ping -c 20 -i 0.05 -W 2 ${VPCI_VM2_ADDR%/*}"
echo "$HOST_OUT" | tail -n 2 | sed 's/^/# VM1: /'
ping_clean "$HOST_OUT" 20
log_test $? "VM1 -> VM2: 20 pings, zero loss"

ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/# /'
faults_zero "$ifname"
log_test $? "no datapath faults counted"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
