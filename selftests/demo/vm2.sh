#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# `make demo` (for now: VM2 only): load the driver against the backend, show
# the interface the way a user would see it, flip the backend's link.
source "$(dirname "$0")/../lib.sh"

step() { echo; echo "==> $*"; }

step "insmod vhost_pci_net.ko"
insmod "$VPCI_KO" || exit 1
dmesg | grep 'vhost_pci_net' | sed 's/^/    /'

dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
ifname=$(netdev_of "$dev")
[ -n "$ifname" ] || { echo "no interface: driver did not bind"; exit 1; }

step "ip link set dev $ifname up; ip -d link show dev $ifname"
ip link set dev "$ifname" up
ip -d link show dev "$ifname"

step "ethtool -i $ifname"
ethtool -i "$ifname"

step "backend status (host: vpci-ctl status)"
host vpci-ctl --control-socket "$VPCI_CTL" status && echo "$HOST_OUT"

step "backend link down, then up (carrier follows)"
host vpci-ctl --control-socket "$VPCI_CTL" link down
wait_until 10 grep -qx 0 "/sys/class/net/$ifname/carrier"
echo "    carrier after link down: $(cat "/sys/class/net/$ifname/carrier")"
host vpci-ctl --control-socket "$VPCI_CTL" link up
wait_until 10 grep -qx 1 "/sys/class/net/$ifname/carrier"
echo "    carrier after link up:   $(cat "/sys/class/net/$ifname/carrier")"

step "rmmod vhost_pci_net"
rmmod vhost_pci_net && echo "    unloaded cleanly"
echo
echo "demo: the datapath (VM1 <-> VM2 traffic) is not wired yet; see README"
