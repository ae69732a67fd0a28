#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# TCP and UDP both ways between VM1 and VM2 (iperf3), and an integrity run
# with the project's traffic tool both ways: every datagram carries a
# sequence number and a checksum; zero loss, duplicates, reordering and
# corruption.  Rates are modest: this runs under TCG.
source "$(dirname "$0")/../lib.sh"

tap_begin 12

TRAFFIC=$VPCI_BUILD/userspace/vpci-traffic
N=${VPCI_TEST_DATAGRAMS:-8000}
RATE=${VPCI_TEST_RATE:-1000}
vm1() { host vm vm1 "$@"; }
VM2_IP=${VPCI_VM2_ADDR%/*}

vpci_up && wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 reachable"

# fq_codel drops what waits > 5 ms in a queue, and under TCG with
# iommu.strict=1 every frame waits for an IOTLB miss: a plain FIFO on both
# ends keeps the qdiscs' AQM out of the link's loss figure (the sender backs
# off on ENOBUFS instead).  VM1's own fq_codel dropped 2 of 8 000 datagrams
# VM1 -> VM2 behind virtio-iommu strict on 6.12, with nothing lost on the
# link.
tc qdisc replace dev "$ifname" root pfifo limit 10000
vm1 'tc qdisc replace dev eth0 root pfifo limit 10000' || diag "VM1's qdisc not replaced: $HOST_OUT"

# iperf WHAT [ARGS]: iperf3 to VM1's server (IPv4, 4 s unless ARGS say).
iperf() {
	local what=$1
	shift
	out=$(iperf3 -c "$VPCI_VM1_IP" -t 4 -f m "$@" 2>&1)
	echo "$out" | grep -E 'sender|receiver|error' | sed "s/^/# $what: /"
	echo "$out" | grep -q receiver && ! echo "$out" | grep -q error
}
iperf "tcp VM2->VM1"
log_test $? "iperf3 TCP VM2 -> VM1"
iperf "tcp VM1->VM2" -R
log_test $? "iperf3 TCP VM1 -> VM2"
# VM1's virtio-net negotiated CSUM and GUEST_CSUM: TCP went with partial
# checksums both ways (the receiver completes them), counted per queue.
stat() { ethtool -S "$ifname" | awk -v k="$1:" '$1 == k { print $2 }'; }
vm1 "ethtool -k eth0 | grep -E '^(tx-checksumming|rx-checksumming):'"
diag "VM1: $(echo "$HOST_OUT" | xargs); VM2 csum_partial from VM1 $(stat vq0_rx_csum_partial), to VM1 $(stat vq0_tx_csum_partial)"
echo "$HOST_OUT" | grep -q '^tx-checksumming: on' &&
	[ "$(stat vq0_rx_csum_partial)" -gt 0 ] && [ "$(stat vq0_tx_csum_partial)" -gt 0 ]
log_test $? "checksum offload both ways (VM1 tx-checksumming on, partial checksums counted)"
# VM1 negotiated HOST_TSO4/6 and GUEST_TSO4/6 (the driver offers them):
# TCP went in GSO frames of up to 64 KiB, one chain each, both ways.
vm1 "ethtool -k eth0 | grep -E '^tcp-segmentation-offload:'"
diag "VM1: $(echo "$HOST_OUT" | xargs); VM2 gso from VM1 $(stat vq0_rx_gso), to VM1 $(stat vq0_tx_gso)"
echo "$HOST_OUT" | grep -q '^tcp-segmentation-offload: on' &&
	[ "$(stat vq0_rx_gso)" -gt 0 ] && [ "$(stat vq0_tx_gso)" -gt 0 ]
log_test $? "TSO both ways (VM1 tcp-segmentation-offload on, GSO frames counted)"
# The same over IPv6: TCPv6 GSO frames (HOST_TSO6/GUEST_TSO6, GSO type
# TCPV6, 40-byte network header) both ways.  Only this TCP runs while the
# counters are read, so a delta of zero means TSO6 was not carried (seen
# with tx-tcp6-segmentation off on both guests).
v6_vm1=fd00:5650::1 v6_vm2=fd00:5650::2
ip -6 addr add "$v6_vm2/64" dev "$ifname" nodad
vm1 "ip -6 addr add $v6_vm1/64 dev eth0 nodad && iperf3 -s -D -B $v6_vm1 -p 5202 --logfile /tmp/iperf3-v6.log && ethtool -k eth0 | awk '\$1 == \"tx-tcp6-segmentation:\" { print \$1, \$2 }'"
tso6=$HOST_OUT
rx0=$(stat vq0_rx_gso) tx0=$(stat vq0_tx_gso)
iperf "tcp6 VM2->VM1" -6 -c "$v6_vm1" -p 5202 -t 3 &&
	iperf "tcp6 VM1->VM2" -6 -c "$v6_vm1" -p 5202 -t 3 -R
log_test $? "iperf3 TCP over IPv6 both ways"
rx1=$(stat vq0_rx_gso) tx1=$(stat vq0_tx_gso)
diag "VM1: $tso6; VM2 gso during TCPv6: from VM1 $rx0 -> $rx1, to VM1 $tx0 -> $tx1"
echo "$tso6" | grep -q '^tx-tcp6-segmentation: on' && isnum "$rx1" && isnum "$tx1" &&
	[ "$rx1" -gt "$rx0" ] && [ "$tx1" -gt "$tx0" ]
log_test $? "TSO6 both ways (VM1 tx-tcp6-segmentation on, GSO frames counted during TCPv6)"
iperf "udp VM2->VM1" -u -b 4M
log_test $? "iperf3 UDP VM2 -> VM1"
iperf "udp VM1->VM2" -u -b 4M -R
log_test $? "iperf3 UDP VM1 -> VM2"

# A TCG guest's receiver may not run for a while: let its socket buffer
# (SO_RCVBUF 8 MiB) absorb that, so that loss means loss on the link.
sysctl -qw net.core.rmem_max=16777216
vm1 'sysctl -qw net.core.rmem_max=16777216'
udp_drops() { nstat -az UdpRcvbufErrors UdpInErrors | awk '/Udp/ { s += $2 } END { print s + 0 }'; }

# VM2 -> VM1: VM1 receives in the background, VM2 sends.
# (The background job must not hold the command channel's stdout open.)
vm1 "($TRAFFIC recv --bind $VPCI_VM1_IP:5301 -n $N --timeout 120 --json >/tmp/r.json 2>&1; echo \$? >/tmp/r.rc) </dev/null >/dev/null 2>&1 & echo \$! >/tmp/r.pid; sleep 0.5"
"$TRAFFIC" send --to "$VPCI_VM1_IP:5301" -n "$N" --size 64-1400 --rate "$RATE" | sed 's/^/# send: /'
vm1 'while kill -0 $(cat /tmp/r.pid) 2>/dev/null; do sleep 0.2; done; cat /tmp/r.json; exit $(cat /tmp/r.rc)'
rc=$?
echo "$HOST_OUT" | sed 's/^/# recv in VM1: /'
vm1 "nstat -az UdpRcvbufErrors UdpInErrors | tail -n 2; ip -s link show dev eth0 | tail -n 4"
echo "$HOST_OUT" | sed 's/^/# VM1: /'
diag "VM2 tx_dropped: $(cat /sys/class/net/$ifname/statistics/tx_dropped); qdisc: $(tc -s qdisc show dev "$ifname" | grep -o 'dropped [0-9]*' | head -n1)"
log_test $rc "vpci-traffic VM2 -> VM1: $N datagrams, zero loss/dup/reorder/corruption"

# VM1 -> VM2: VM2 receives, VM1 sends.
"$TRAFFIC" recv --bind "$VM2_IP:5302" -n "$N" --timeout 120 --json >/tmp/r.json 2>&1 &
recv=$!
sleep 0.5
vm1 "$TRAFFIC send --to $VM2_IP:5302 -n $N --size 64-1400 --rate $RATE"
echo "$HOST_OUT" | sed 's/^/# send in VM1: /'
wait $recv
rc=$?
sed 's/^/# recv: /' /tmp/r.json
diag "VM2 UDP socket drops: $(udp_drops)"
vm1 "tc -s qdisc show dev eth0 | grep -o 'dropped [0-9]*' | head -n1"
diag "VM1 qdisc: $HOST_OUT"
log_test $rc "vpci-traffic VM1 -> VM2: $N datagrams, zero loss/dup/reorder/corruption"

ethtool -S "$ifname" | grep -E 'fault|stalls|iotlb_(updates|invalidations)' | grep -vE ': 0$' | sed 's/^/# /'
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
