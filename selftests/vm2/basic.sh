#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# The driver binds the emulated vhost-pci function and presents a netdev:
# up/down, MTU bounded by the control area, carrier following the backend's
# link state, driver state reported to the backend, clean unload while up.
source "$(dirname "$0")/../lib.sh"

tap_begin 21

dev=
for d in $(ivshmem_devices); do
	ivshmem_has_msix "$d" && dev=$d
done
[ -n "$dev" ]
log_test $? "ivshmem-doorbell function present ($dev)"

check "insmod vhost_pci_net" insmod "$VPCI_KO"

[ "$(bound_driver "$dev")" = vhost_pci_net ]
log_test $? "driver bound to $dev"

ifname=$(netdev_of "$dev")
[ -n "$ifname" ] && ip link show dev "$ifname" >/dev/null
log_test $? "interface $ifname appears"

ip link set dev "$ifname" up &&
	ip -o link show dev "$ifname" | grep -q '<.*,UP[,>]'
log_test $? "ip link set up"

host vpci-ctl --control-socket "$VPCI_CTL" status &&
	echo "$HOST_OUT" | grep -q '"up": *true' &&
	echo "$HOST_OUT" | grep -q '"bound": *true'
log_test $? "backend sees the driver bound and up"
diag "backend status: $(echo "$HOST_OUT" | tr -d '\n' | cut -c1-300)"

carrier() { [ "$(cat "/sys/class/net/$ifname/carrier" 2>/dev/null)" = "$1" ]; }
check "carrier up (backend link up)" wait_until 5 carrier 1

host vpci-ctl --control-socket "$VPCI_CTL" link down &&
	wait_until 10 carrier 0
log_test $? "carrier follows backend link down"
host vpci-ctl --control-socket "$VPCI_CTL" link up &&
	wait_until 10 carrier 1
log_test $? "carrier follows backend link up"

max=$(ip -d link show dev "$ifname" | sed -n 's/.*maxmtu \([0-9]*\).*/\1/p')
ip link set dev "$ifname" mtu 1000 && ip link set dev "$ifname" mtu "$max" &&
	[ "$(cat "/sys/class/net/$ifname/mtu")" = "$max" ] &&
	host vpci-ctl --control-socket "$VPCI_CTL" status &&
	echo "$HOST_OUT" | grep -q "\"mtu\": *$max"
log_test $? "mtu 1000 and $max accepted, backend sees $max"

! ip link set dev "$ifname" mtu $((max + 1)) 2>/dev/null &&
	! ip link set dev "$ifname" mtu 67 2>/dev/null &&
	[ "$(cat "/sys/class/net/$ifname/mtu")" = "$max" ]
log_test $? "mtu $((max + 1)) and 67 rejected, mtu unchanged"

ip -d link show dev "$ifname" | grep -q "minmtu 68 maxmtu $max"
log_test $? "ip -d link show reports minmtu 68 maxmtu $max"

ip link set dev "$ifname" down &&
	! ip -o link show dev "$ifname" | grep -q '<.*,UP[,>]' &&
	ip link set dev "$ifname" up
log_test $? "ip link set down and up again"

# No VM1 runs a pair here: one TX queue, whatever number of pairs the
# backend wired ("queues" in the topology), so that the stack hashes no
# frame to a pair nobody serves (it would be dropped).  With VM1, the
# queue counts follow the pairs it enables (e2e/multiqueue.sh).
pairs=$(ethtool -l "$ifname" | awk '/^Combined:/ {print $2}' | xargs)
ntx=$(ls -d /sys/class/net/"$ifname"/queues/tx-* | wc -l)
diag "ethtool -l combined (max current): $pairs; tx queues: $ntx"
[ "$ntx" = 1 ] && [ "${pairs#* }" = 1 ] && [ "${pairs% *}" -ge 1 ]
log_test $? "one TX queue in use, ethtool -l current 1 of ${pairs% *}"

# Poll mode polls only a queue VM1 runs on an interface that is up: here
# there is no VM1, so NAPI must not spin (NET_RX softirqs on the one vCPU).
net_rx() { awk '$1 == "NET_RX:" { s = 0; for (i = 2; i <= NF; i++) s += $i; print s }' /proc/softirqs; }
ethtool --set-priv-flags "$ifname" poll-mode on
log_test $? "poll mode on"
r0=$(net_rx); sleep 2; r1=$(net_rx)
diag "NET_RX softirqs in 2 s of poll mode without VM1: $((r1 - r0))"
isnum "$r0" "$r1" && [ $((r1 - r0)) -lt 200 ]
log_test $? "poll mode without VM1 does not spin ($((r1 - r0)) NET_RX in 2 s)"
ip link set dev "$ifname" down && ip link set dev "$ifname" up &&
	ethtool --set-priv-flags "$ifname" poll-mode off &&
	ethtool --show-priv-flags "$ifname" | grep -q 'poll-mode *: off'
log_test $? "down and up in poll mode, back to interrupt mode"

# One line per vector in /proc/interrupts, each named after the function.
irqs=$(grep -oE "$dev-(config|vq0-tx|vq0-rx)\$" /proc/interrupts | sort | xargs)
diag "vectors: $irqs"
[ "$irqs" = "$dev-config $dev-vq0-rx $dev-vq0-tx" ]
log_test $? "distinct IRQ names: config, vq0-rx, vq0-tx, once each"

# netpoll (netconsole) would call ndo_start_xmit with interrupts off.
ip addr add 169.254.200.2/16 dev "$ifname"
# (6.1's netconsole then fails to load; 6.12's loads with the target off.)
modprobe netconsole "netconsole=6665@169.254.200.2/$ifname,6666@169.254.200.1/" 2>/dev/null
dmesg | grep -q "$ifname doesn't support polling"
log_test $? "netconsole refused: the device disables netpoll"
rmmod netconsole 2>/dev/null
ip addr flush dev "$ifname"

rmmod vhost_pci_net && [ ! -e "/sys/class/net/$ifname" ] &&
	host vpci-ctl --control-socket "$VPCI_CTL" status &&
	echo "$HOST_OUT" | grep -q '"bound": *false'
log_test $? "rmmod with the interface up; backend sees the driver gone"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
