#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# Either side restarts while the other stays up, and traffic resumes:
# VM1 reloads virtio_net (its QEMU stops and restarts the vhost-user rings:
# GET_VRING_BASE, new rings), VM2 unloads and reloads the driver.  Pings go
# both ways, and every invalidation VM1 issued was acked, none timed out.
source "$(dirname "$0")/../lib.sh"

tap_begin 10

vm1() { host vm vm1 "$@"; }
reachable() { wait_until "${1:-60}" ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null; }
no_loss() {
	local out
	out=$(ping -c "$1" -i 0.1 -W 2 "$VPCI_VM1_IP")
	echo "$out" | tail -n 2 | sed 's/^/# /'
	ping_clean "$out" "$1"
}

vpci_up && reachable 120 && no_loss 10
log_test $? "VM2 -> VM1: 10 pings, zero loss"

vm1 "ping -c 10 -i 0.1 -W 2 ${VPCI_VM2_ADDR%/*}"
echo "$HOST_OUT" | tail -n 2 | sed 's/^/# /'
ping_clean "$HOST_OUT" 10
log_test $? "VM1 -> VM2: 10 pings, zero loss"

dmesg -C
vm1 'rmmod virtio_net && modprobe virtio_net && sleep 1 &&
     i=$(ls /sys/bus/virtio/drivers/virtio_net/*/net | head -n1) &&
     ip link set dev $i up && ip addr add 169.254.100.1/16 dev $i && echo $i'
log_test $? "VM1 reloads virtio_net (${HOST_OUT:-?})"

wait_until 60 vpci_queues_started
log_test $? "VM2 saw VM1's rings stop and start again"
dmesg | grep -E 'queue [01]: (stopped|started)' | sed 's/^/# /'

reachable 60 && no_loss 20
rc=$?
if [ $rc -ne 0 ]; then
	ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/# /'
	dmesg | tail -n 20 | sed 's/^/# /'
	vm1 'ip -s link; cat /proc/interrupts | grep -i virtio'
	echo "$HOST_OUT" | sed 's/^/# vm1: /'
fi
log_test $rc "traffic resumes after VM1's reset: 20 pings, zero loss"

rmmod vhost_pci_net
log_test $? "VM2 unloads the driver while VM1 stays up"

vpci_up && reachable 60 && no_loss 20
log_test $? "driver reloaded, traffic resumes: 20 pings, zero loss"

vm1 "ping -c 10 -i 0.1 -W 2 ${VPCI_VM2_ADDR%/*}"
ping_clean "$HOST_OUT" 10
log_test $? "VM1 -> VM2 after both restarts: 10 pings, zero loss"

# Every invalidation the backend forwarded to the driver was acked by it
# (none timed out); one still in flight when status is read gets a moment.
inv_acked()
{
	host vpci-ctl --control-socket "$VPCI_CTL" status
	iotlb=$(echo "$HOST_OUT" | jq -r '.iotlb | "\(.invalidations) \(.to_driver) \(.acks) \(.timeouts)"')
	set -- $iotlb
	isnum "$1" "$2" "$3" "$4" && [ "$4" = 0 ] && [ "$2" -gt 0 ] && [ "$3" = "$2" ]
}
wait_until 5 inv_acked
rc=$?
diag "backend iotlb: invalidations, to the driver, acks, timeouts = $iotlb"
log_test $rc "every invalidation forwarded to the driver acked by it (acks = to_driver > 0), none timed out"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
