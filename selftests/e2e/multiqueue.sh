#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# Two queue pairs (run with queues=2:vectors=5:vm1_mq=on): the backend
# wires two, the driver offers VIRTIO_NET_F_MQ, VM1's virtio-net asks its
# QEMU for both (ethtool -L; QEMU answers the control virtqueue and enables
# the rings) and VM2's interface follows with two TX and RX queues.  TCP
# flows both ways then use both pairs, counted per queue; when VM1 goes
# back to one pair, VM2 follows and traffic goes on.  The queue vectors are
# spread as virtio_net spreads its virtqueues (run with vm2_smp=2 to see two
# CPUs used).
source "$(dirname "$0")/../lib.sh"

tap_begin 8

vm1() { host vm vm1 "$@"; }
stat() { ethtool -S "$ifname" | awk -v k="$1:" '$1 == k { print $2 }'; }
# "max current" of ethtool -l Combined, e.g. "2 2"
pairs() { ethtool -l "$ifname" | awk '/^Combined:/ { print $2 }' | xargs; }
ntx() { ls -d /sys/class/net/"$ifname"/queues/tx-* | wc -l; }
nrx() { ls -d /sys/class/net/"$ifname"/queues/rx-* | wc -l; }
follows() { [ "$(pairs)" = "2 $1" ] && [ "$(ntx)" = "$1" ] && [ "$(nrx)" = "$1" ]; }

vpci_up && wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 reachable"

vm1 "ethtool -l eth0 | awk '/^Combined:/ { print \$2 }' | xargs"
vm1_pairs=$HOST_OUT
vm1 "ethtool -L eth0 combined 2 && ethtool -l eth0 | awk '/^Combined:/ { print \$2 }' | tail -n 1"
diag "VM1 combined (max current) before: $vm1_pairs; after ethtool -L: $HOST_OUT"
[ "${vm1_pairs% *}" = 2 ] && [ "$HOST_OUT" = 2 ]
log_test $? "VM1 negotiated MQ with 2 pairs and enabled both"

wait_until 30 follows 2
rc=$?
diag "VM2: ethtool -l combined (max current) $(pairs), $(ntx) TX and $(nrx) RX queues"
dmesg | grep -E 'queue pair|queue [0-3]: started' | sed 's/^/# /'
log_test $rc "VM2 follows: 2 TX and 2 RX queues, ethtool -l current 2"

# Both vectors of pair p on CPU p mod ncpus: the affinity hint and the
# affinity itself (/proc/irq), each vector found by its one name.
ncpu=$(nproc)
spread() {
	local p d irq hint list
	for p in 0 1; do
		for d in rx tx; do
			irq=$(awk -v n="-vq$p-$d" 'substr($NF, length($NF) - length(n) + 1) == n \
				{ sub(":", "", $1); print $1 }' /proc/interrupts)
			[ "$(wc -w <<<"$irq")" = 1 ] || { diag "vq$p-$d: IRQ '$irq'"; return 1; }
			hint=$(tr -d ',\n' < "/proc/irq/$irq/affinity_hint")
			list=$(cat "/proc/irq/$irq/smp_affinity_list")
			diag "vq$p-$d: IRQ $irq, hint $hint, affinity $list"
			[ $((16#$hint)) = $((1 << (p % ncpu))) ] && [ "$list" = $((p % ncpu)) ] ||
				return 1
		done
	done
}
spread
log_test $? "queue vectors spread: pair p on CPU p mod $ncpu (hint and affinity)"

# 16 flows each way: all of them on one pair by chance is 2 in 65 536.
iperf() {
	local out
	out=$(iperf3 -c "$VPCI_VM1_IP" -t 3 -P 16 -f m "$@" 2>&1)
	echo "$out" | grep -E 'SUM.*(sender|receiver)|error' | sed 's/^/# /'
	echo "$out" | grep -q 'SUM.*receiver' && ! echo "$out" | grep -q error
}
iperf && iperf -R
rc=$?
for k in vq0_tx_packets vq1_tx_packets vq0_rx_packets vq1_rx_packets; do
	eval "$k=\$(stat $k)"
done
diag "to VM1 per pair: $vq0_tx_packets $vq1_tx_packets; from VM1: $vq0_rx_packets $vq1_rx_packets; VM2 tx_dropped $(cat /sys/class/net/"$ifname"/statistics/tx_dropped)"
[ $rc = 0 ] && isnum "$vq0_tx_packets" "$vq1_tx_packets" "$vq0_rx_packets" "$vq1_rx_packets" &&
	[ "$vq0_tx_packets" -gt 0 ] && [ "$vq1_tx_packets" -gt 0 ] &&
	[ "$vq0_rx_packets" -gt 0 ] && [ "$vq1_rx_packets" -gt 0 ]
log_test $? "iperf3 TCP, 16 flows each way: both pairs carry frames both ways"

vm1 "ethtool -L eth0 combined 1"
wait_until 30 follows 1
rc=$?
diag "VM2 after VM1 went back to one pair: ethtool -l $(pairs), $(ntx) TX queues"
log_test $rc "VM1 back to one pair: VM2 follows (1 TX queue)"

out=$(ping -c 20 -i 0.2 -W 2 "$VPCI_VM1_IP" 2>&1)
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 20
log_test $? "ping after the change: 20 of 20, no duplicates"

check "no BUG/WARNING/Oops in dmesg, no fault counted" eval "dmesg_clean && faults_zero $ifname"

tap_end
