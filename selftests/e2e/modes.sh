#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# Interrupt, poll and hybrid modes between two real VMs, switched at runtime
# while a ping flood runs: not one echo lost across the switches.  In poll
# mode VM1's kicks for its TX ring stop (VM2 polls instead).
source "$(dirname "$0")/../lib.sh"

tap_begin 11

check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up
wait_until 120 vpci_queues_started && wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 reachable in interrupt mode"

ethtool --show-priv-flags "$ifname" | grep -q 'poll-mode *: off'
log_test $? "ethtool --show-priv-flags: poll-mode off by default"

stat() { ethtool -S "$ifname" | awk -v k="$1:" '$1 == k { print $2 }'; }

ping -c 150 -i 0.05 -W 3 "$VPCI_VM1_IP" > /tmp/flood.txt 2>&1 &
flood=$!
sleep 1
ethtool --set-priv-flags "$ifname" poll-mode on
log_test $? "switch to poll mode under traffic"
sleep 1
bcpu() {
	host vpci-ctl --control-socket "$VPCI_CTL" status >/dev/null
	echo "$HOST_OUT" | python3 -c 'import json,sys; d=json.load(sys.stdin); q=d["frontend"]["queues"][:2]; print(d["cpu_seconds"], sum(x.get("kicks_relayed", 0) for x in q), sum(x.get("calls_relayed", 0) for x in q))'
}
read -r c0 kr0 cr0 <<<"$(bcpu)"
k0=$(stat vq0_rx_kicks)
sleep 2
k1=$(stat vq0_rx_kicks)
read -r c1 kr1 cr1 <<<"$(bcpu)"
diag "backend during 2 s of poll-mode traffic: $(python3 -c "print(round($c1 - $c0, 3))") CPU s, kicks relayed $((kr1 - kr0)), calls relayed $((cr1 - cr0))"
diag "VM1 TX kicks during 2 s of poll mode: $((k1 - k0))"
isnum "$c0" "$kr0" "$cr0" "$c1" "$kr1" "$cr1" &&
	[ $((kr1 - kr0)) -eq 0 ] && [ $((cr1 - cr0)) -eq 0 ]
log_test $? "poll mode: no notification goes through the backend (VM2 rings VM1's call fds directly)"
isnum "$k0" "$k1" && [ $((k1 - k0)) -le 1 ]
log_test $? "poll mode: VM1 stops kicking its TX ring"
ethtool --set-priv-flags "$ifname" poll-mode off &&
	ethtool -C "$ifname" rx-usecs 2000 &&
	ethtool -c "$ifname" | grep -q 'rx-usecs: *2000'
log_test $? "back to interrupt mode, hybrid rx-usecs 2000"
sleep 1
ethtool -C "$ifname" rx-usecs 0
wait $flood
tail -n 2 /tmp/flood.txt | sed 's/^/# /'
ping_clean "$(cat /tmp/flood.txt)" 150
log_test $? "150 pings across three mode switches, zero loss"

k0=$(stat vq0_rx_kicks)
ping -c 10 -i 0.1 "$VPCI_VM1_IP" >/dev/null
k1=$(stat vq0_rx_kicks)
isnum "$k0" "$k1" && [ $((k1 - k0)) -ge 5 ]
log_test $? "interrupt mode again: VM1 kicks ($((k1 - k0)) for 10 pings)"

! ethtool -C "$ifname" rx-usecs 2000000 2>/dev/null
log_test $? "rx-usecs above 1 s rejected"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
