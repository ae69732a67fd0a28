#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# The VM-to-VM benchmark, guest side.  Runs in VM2; VM1 runs vm1/guest.sh.
# With topology vm1vm2 VM2 is the vhost-pci device (path "vhost-pci"); with
# vm1dpdkvm2 it is an ordinary virtio-net guest behind dpdk-testpmd (path
# "dpdk", VPCI_BENCH_NIC=virtio).  VM1 and the traffic are the same.
#
# For every size (IP packet bytes; UDP payload = size - 28) and direction:
# an unpaced timed vpci-traffic run (packets/s, loss, CPU seconds of the
# host's switch -- vpci-backend or testpmd -- and of both VMs' QEMU during
# the send) and round trips against an echo (RTT p50/p99).  Every result is
# a line "# BENCH {json}" (scripts/bench-vm.sh collects them); the TAP
# tests only say that each run moved traffic intact.  Knobs (from the host):
# VPCI_BENCH_SECONDS, _SIZES, _DIRS, _RTT (round trips), _IOMMU and _ROUND
# (labels).
source "$(dirname "$0")/../lib.sh"
set -u

TRAFFIC=$VPCI_BUILD/userspace/vpci-traffic
RUN_S=${VPCI_BENCH_SECONDS:-5}
SIZES=${VPCI_BENCH_SIZES:-64 512 1500}
DIRS=${VPCI_BENCH_DIRS:-vm1-vm2 vm2-vm1}
RTT_N=${VPCI_BENCH_RTT:-300}
NIC=${VPCI_BENCH_NIC:-vhost-pci}
SWITCH=${VPCI_BENCH_SWITCH:-backend}
VM1_IP=$VPCI_VM1_IP
VM2_IP=${VPCI_VM2_ADDR%/*}
[ "$NIC" = virtio ] && path=dpdk || path=vhost-pci
labels=$(jq -cn --arg path "$path" --arg iommu "${VPCI_BENCH_IOMMU:-}" \
	--argjson round "${VPCI_BENCH_ROUND:-0}" '{path: $path, iommu: $iommu, round: $round}')
vm1() { host vm vm1 "$1"; }

bg=
cleanup()
{
	[ -n "$bg" ] && kill "$bg" 2>/dev/null
	bg=
}
trap cleanup EXIT

read -r -a sizes <<<"$SIZES"
read -r -a dirs <<<"$DIRS"
tap_begin $((3 + 2 * ${#sizes[@]} * ${#dirs[@]}))

case $NIC in
vhost-pci) insmod "$VPCI_KO" && wait_until 10 vpci_netdev >/dev/null && ifname=$(vpci_netdev) ;;
virtio) modprobe virtio_net && wait_until 10 virtio_netdev >/dev/null && ifname=$(virtio_netdev) ;;
esac
ip addr add "$VPCI_VM2_ADDR" dev "$ifname" && ip link set dev "$ifname" up
log_test $? "$NIC interface ${ifname:-none} up"
[ -n "${ifname:-}" ] || { tap_end; exit; }

# First packets wait for VM1's queues, ARP and IOTLB misses.
wait_until 120 ping -c 1 -W 1 "$VM1_IP" >/dev/null
log_test $? "VM1 reachable"

# The same on both sides and both paths: a plain FIFO (no AQM drops under
# TCG delays) and receive buffers that may grow to what vpci-traffic asks.
tc qdisc replace dev "$ifname" root pfifo limit 10000
sysctl -qw net.core.rmem_max=16777216
vm1 'sysctl -qw net.core.rmem_max=16777216; i=$(ls /sys/bus/virtio/drivers/virtio_net/*/net | head -n1); tc qdisc replace dev $i root pfifo limit 10000; cat /sys/class/net/$i/device/features /proc/cmdline'
vm1_info=$HOST_OUT
vm2_features=
[ "$NIC" = virtio ] && vm2_features=$(cat "/sys/class/net/$ifname/device/features")
jq -cn --argjson l "$labels" --arg f1 "$(sed -n 1p <<<"$vm1_info")" \
	--arg c1 "$(sed -n 2p <<<"$vm1_info")" --arg f2 "$vm2_features" \
	--arg c2 "$(cat /proc/cmdline)" --arg k "$(uname -r)" \
	'$l + {kind: "setup", vm1_features: $f1, vm1_cmdline: $c1, vm2_features: $f2,
	       vm2_cmdline: $c2, guest_kernel: $k}' | sed 's/^/# BENCH /'

# cpu: CPU seconds of the switch and both VMs (host side) and the runner's
# clock, as JSON.
cpu() { host cpu "$SWITCH" vm1 vm2 && echo "$HOST_OUT"; }

# alive: VM1 still answers after a run; if not, what the datapath shows.
alive()
{
	ping -c 2 -W 2 "$VM1_IP" >/dev/null && return 0
	diag "VM1 does not answer any more after that run:"
	ip -s link show dev "$ifname" | sed 's/^/#   /'
	tc -s qdisc show dev "$ifname" | sed 's/^/#   /'
	if [ "$NIC" = vhost-pci ]; then
		ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/#   /'
		cat /sys/kernel/debug/vhost_pci_net/*/state | sed 's/^/#   /'
	fi
	vm1 'i=$(ls /sys/bus/virtio/drivers/virtio_net/*/net | head -n1); ip -s link show dev $i; tc -s qdisc show dev $i'
	echo "$HOST_OUT" | sed 's/^/#   VM1: /'
	return 1
}

# throughput DIR SIZE PORT: one unpaced timed run from the sender in DIR.
throughput()
{
	local dir=$1 size=$2 port=$3 send recv c0 c1 rec
	local args="--seconds $RUN_S --size $((size - 28))"
	local rargs="-n 0 --idle 1 --timeout $((RUN_S + 60)) --json"
	if [ "$dir" = vm1-vm2 ]; then
		"$TRAFFIC" recv --bind "$VM2_IP:$port" $rargs >/tmp/recv.out 2>&1 &
		bg=$!
		wait_until 10 grep -q ready /tmp/recv.out
		c0=$(cpu)
		vm1 "$TRAFFIC send --to $VM2_IP:$port $args"
		send=$HOST_OUT
		c1=$(cpu)
		wait "$bg"
		bg=
		recv=$(tail -n 1 /tmp/recv.out)
	else
		vm1 "$TRAFFIC recv --bind $VM1_IP:$port $rargs </dev/null >/tmp/recv.out 2>&1 & echo \$! >/tmp/recv.pid; for i in \$(seq 100); do grep -q ready /tmp/recv.out && break; sleep 0.1; done"
		c0=$(cpu)
		send=$("$TRAFFIC" send --to "$VM1_IP:$port" $args 2>&1)
		c1=$(cpu)
		vm1 'while kill -0 $(cat /tmp/recv.pid) 2>/dev/null; do sleep 0.2; done; tail -n 1 /tmp/recv.out'
		recv=$HOST_OUT
	fi
	rec=$(jq -cn --argjson l "$labels" --arg dir "$dir" --argjson size "$size" \
		--argjson s "$send" --argjson r "$recv" --argjson c0 "$c0" --argjson c1 "$c1" \
		'$l + {kind: "throughput", dir: $dir, size: $size, sent: $s.sent,
		       received: $r.received, lost: ($s.sent - $r.received),
		       socket_drops: $r.socket_drops, corrupt: $r.corrupt,
		       duplicates: $r.duplicates, reordered: $r.reordered,
		       seconds: $r.seconds, pps: $r.pps, send_pps: $s.pps,
		       mbps: ($r.pps * $size * 8 / 1e6),
		       cpu: ($c1 | with_entries(.value -= $c0[.key]))}') || {
		diag "send: $send"
		diag "recv: $recv"
		return 1
	}
	echo "# BENCH $rec"
	alive || return 1
	jq -e '.received > 0 and .corrupt == 0 and .duplicates == 0' <<<"$rec" >/dev/null
}

# rtt DIR SIZE PORT: round trips from the VM that sends in DIR.
rtt()
{
	local dir=$1 size=$2 port=$3 out rec
	local args="-n $RTT_N --size $((size - 28)) --wait-ms 100 --seconds 20"
	local eargs="--idle 5 --timeout 60"
	if [ "$dir" = vm1-vm2 ]; then
		"$TRAFFIC" echo --bind "$VM2_IP:$port" $eargs >/tmp/echo.out 2>&1 &
		bg=$!
		wait_until 10 grep -q ready /tmp/echo.out
		vm1 "$TRAFFIC rtt --to $VM2_IP:$port $args"
		out=$HOST_OUT
		cleanup
	else
		vm1 "$TRAFFIC echo --bind $VM1_IP:$port $eargs </dev/null >/tmp/echo.out 2>&1 & echo \$! >/tmp/echo.pid; for i in \$(seq 100); do grep -q ready /tmp/echo.out && break; sleep 0.1; done"
		out=$("$TRAFFIC" rtt --to "$VM1_IP:$port" $args 2>&1)
		vm1 'kill $(cat /tmp/echo.pid)'
	fi
	rec=$(jq -cn --argjson l "$labels" --arg dir "$dir" --argjson size "$size" \
		--argjson r "$out" '$l + {kind: "rtt", dir: $dir, size: $size} +
			($r | del(.role, .size))') || {
		diag "rtt: $out"
		return 1
	}
	echo "# BENCH $rec"
	jq -e '.received > 0' <<<"$rec" >/dev/null
}

port=5400
for size in "${sizes[@]}"; do
	for dir in "${dirs[@]}"; do
		port=$((port + 1))
		throughput "$dir" "$size" "$port"
		log_test $? "$path $dir $size B: traffic moved intact"
	done
done
for size in "${sizes[@]}"; do
	for dir in "${dirs[@]}"; do
		port=$((port + 1))
		rtt "$dir" "$size" "$port"
		log_test $? "$path $dir $size B: round trips answered"
	done
done

[ "$NIC" = vhost-pci ] && ethtool -S "$ifname" | grep -E 'fault|stall' | grep -vE ': 0$' | sed 's/^/# /'
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
