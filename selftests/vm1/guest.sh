#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# VM1's side of two-VM topologies: bring virtio-net up behind the vIOMMU
# and stay up until the runner ends the run.  Output goes to the runner as
# "# vm1:" diagnostics (VM1 is not the VM whose TAP is judged).
source "$(dirname "$0")/../lib.sh"
modprobe virtio_net
wait_until 10 virtio_netdev >/dev/null
ifname=$(virtio_netdev)
if [ -z "$ifname" ]; then
	echo "# vm1: no virtio-net interface"
	exit 1
fi
ip link set dev "$ifname" up
# IPv4 link-local: the link between the two guests reaches nothing else.
[ -n "${VPCI_VM1_ADDR:-}" ] && ip addr add "$VPCI_VM1_ADDR" dev "$ifname"
# A traffic sink/source for iperf3 clients in VM2.
if [ -n "${VPCI_VM1_ADDR:-}" ] && command -v iperf3 >/dev/null; then
	iperf3 -s -D -B "${VPCI_VM1_ADDR%/*}" --logfile /tmp/iperf3.log
fi
dev=$(basename "$(readlink -f "/sys/class/net/$ifname/device")")
echo "# vm1: $ifname up, virtio status $(cat "/sys/bus/virtio/devices/$dev/status"), features $(cat "/sys/bus/virtio/devices/$dev/features")"
echo "# vm1: iommu groups $(ls /sys/kernel/iommu_groups | wc -l), cmdline: $(grep -o 'iommu[^ ]*' /proc/cmdline | tr '\n' ' ')"
# Serve commands other guests send through the runner ("vm vm1 CMD" from a
# test's `host` helper): "@run ID BASE64" in, "@done ID RC BASE64" out,
# until the runner sends "@quit" (the test is over: power off).  Each runs
# on its own: a remote endpoint's listener that waits for a connection
# (the kernel's drivers/net ping.py) must not hold up the commands that
# follow it; the @done lines go out one at a time (flock).
while read -r tag id b64 <&3; do
	[ "$tag" = "@quit" ] && exit 0
	[ "$tag" = "@run" ] || continue
	(
		# The command gets neither the channel nor the lock's fd: a
		# daemon it leaves (iperf3 -s -D) would hold the lock for good.
		out=$(echo "$b64" | base64 -d | timeout 120 bash 2>&1 3>&-)
		rc=$?
		line="@done $id $rc $(printf '%s' "$out" | base64 -w0)"
		{ flock 9; printf '%s\n' "$line" >&3; } 9>/tmp/vpci-channel.lock
	) &
done
sleep 600
