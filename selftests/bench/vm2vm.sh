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
# an unpaced timed vpci-traffic run, with the CPU seconds of the host's
# switch (vpci-backend or testpmd) and of both VMs' QEMU sampled just
# before and after the send; then round trips against an echo (at most
# 6 s each: with DPDK in strict mode nearly all are lost, 100 ms each).  Receivers
# and echoes are all started up front, each on its own port, so that one
# measurement costs at most one command in VM1 (a few hundred ms of TCG).
# What the tools print goes out raw as "# BENCH {json}" lines;
# scripts/bench-vm.sh collects them and scripts/bench-report.py computes.
# The TAP tests only say that each run moved traffic intact.
#
# With VPCI_BENCH_NDR=1, then the zero-loss rate (NDR, as RFC 2544 and
# DPDK's perf reports give it) of every size and direction: a binary search
# of the paced rate (vpci-traffic send --rate, for VPCI_BENCH_NDR_SECONDS)
# between 0 and 1.25 times the unpaced run's received rate, in
# VPCI_BENCH_NDR_STEPS probes, each against a fresh receiver.  A probe is
# lossless when the receiver got every datagram the sender sent; the NDR is
# the highest rate the sender achieved in a lossless probe (a path that
# pushes back keeps the sender below what it offers, and loses nothing).
#
# Knobs (from the host): VPCI_BENCH_SECONDS (per throughput run), _SIZES,
# _DIRS, _RTT (round trips per size and direction), _IOMMU, _ROUND (labels),
# _NDR (0), _NDR_SECONDS (2), _NDR_STEPS (5).
source "$(dirname "$0")/../lib.sh"
set -u

TRAFFIC=$VPCI_BUILD/userspace/vpci-traffic
RUN_S=${VPCI_BENCH_SECONDS:-5}
RTT_N=${VPCI_BENCH_RTT:-300}
NIC=${VPCI_BENCH_NIC:-vhost-pci}
NDR=${VPCI_BENCH_NDR:-0}
NDR_S=${VPCI_BENCH_NDR_SECONDS:-2}
NDR_STEPS=${VPCI_BENCH_NDR_STEPS:-5}
SWITCH=${VPCI_BENCH_SWITCH:-backend}
VM1_IP=$VPCI_VM1_IP
VM2_IP=${VPCI_VM2_ADDR%/*}
OUT=/tmp/bench
read -r -a sizes <<<"${VPCI_BENCH_SIZES:-64 512 1500}"
read -r -a dirs <<<"${VPCI_BENCH_DIRS:-vm1-vm2 vm2-vm1}"
[ "$NIC" = virtio ] && path=dpdk || path=vhost-pci
# bench-vm.sh names a variant of a path (dpdk-retry: testpmd io retry).
case ${VPCI_BENCH_PATH:-} in
"") ;;
"$path" | "$path"-*) path=$VPCI_BENCH_PATH ;;
*) echo "vm2vm.sh: VPCI_BENCH_PATH=$VPCI_BENCH_PATH is not a variant of $path" >&2; exit 1 ;;
esac
labels="\"path\":\"$path\",\"iommu\":\"${VPCI_BENCH_IOMMU:-}\",\"round\":${VPCI_BENCH_ROUND:-0}"
vm1() { host vm vm1 "$1"; }
bench() { echo "# BENCH {$labels,$1}"; }

# Our own background processes (receivers, echoes), ended on every path.
pids=()
cleanup()
{
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
}
trap cleanup EXIT

nruns=$((${#sizes[@]} * ${#dirs[@]}))
nndr=0
[ "$NDR" = 1 ] && nndr=$nruns
tap_begin $((3 + 2 * nruns + nndr))

case $NIC in
vhost-pci) insmod "$VPCI_KO" && wait_until 10 vpci_netdev >/dev/null && ifname=$(vpci_netdev) ;;
virtio) modprobe virtio_net && wait_until 10 virtio_netdev >/dev/null && ifname=$(virtio_netdev) ;;
esac
ip addr add "$VPCI_VM2_ADDR" dev "${ifname:-none}" && ip link set dev "$ifname" up
log_test $? "$NIC interface ${ifname:-none} up"
[ -n "${ifname:-}" ] || tap_end

# First packets wait for VM1's queues, ARP and IOTLB misses.
wait_until 120 ping -c 1 -W 1 "$VM1_IP" >/dev/null
log_test $? "VM1 reachable"
diag "set up in ${SECONDS}s"

# The same on both sides and both paths: a plain FIFO (no AQM drops under
# TCG delays) and receive buffers that may grow to what vpci-traffic asks.
tc qdisc replace dev "$ifname" root pfifo limit 10000
sysctl -qw net.core.rmem_max=16777216
vm1 'sysctl -qw net.core.rmem_max=16777216; i=$(ls /sys/bus/virtio/drivers/virtio_net/*/net | head -n1); tc qdisc replace dev $i root pfifo limit 10000; cat /sys/class/net/$i/device/features'
vm1_features=$HOST_OUT
vm2_features=
[ "$NIC" = virtio ] && vm2_features=$(cat "/sys/class/net/$ifname/device/features")
bench "\"kind\":\"setup\",\"vm1_features\":\"$vm1_features\",\"vm2_features\":\"$vm2_features\",\"guest_kernel\":\"$(uname -r)\""

# Ports: throughput run i (size-major) on 5400+i, round trips on 5500+i.
runs=()
for size in "${sizes[@]}"; do
	for dir in "${dirs[@]}"; do
		runs+=("$dir $size")
	done
done

# The throughput runs and the NDR searches go in a random order (seeded by
# the round: A and B of a round run the same order, each round draws its
# own), so
# that drift within a boot falls on no size or direction in particular.
# A Fisher-Yates shuffle on bash's own seeded RANDOM (the guest has no
# /dev/fd for shuf --random-source=<(...)).
order=("${!runs[@]}")
RANDOM=$((${VPCI_BENCH_ROUND:-0} + 1))
for ((k = ${#order[@]} - 1; k > 0; k--)); do
	j=$((RANDOM % (k + 1)))
	t=${order[k]}
	order[k]=${order[j]}
	order[j]=$t
done
diag "order of the runs: $(for i in "${order[@]}"; do printf '%s, ' "${runs[$i]}"; done)"

mkdir -p "$OUT"
serve="-n 0 --timeout 900"
vm1_cmd=
for i in "${!runs[@]}"; do
	read -r dir size <<<"${runs[$i]}"
	if [ "$dir" = vm1-vm2 ]; then
		"$TRAFFIC" recv --bind "$VM2_IP:$((5400 + i))" $serve --idle 1 --json \
			>"$OUT/recv-$i" 2>&1 &
		pids+=($!)
		"$TRAFFIC" echo --bind "$VM2_IP:$((5500 + i))" --idle 3 --timeout 900 >/dev/null 2>&1 &
		pids+=($!)
	else
		vm1_cmd+="$TRAFFIC recv --bind $VM1_IP:$((5400 + i)) $serve --idle 1 --json </dev/null >$OUT-recv-$i 2>&1 & echo \$! >>$OUT-pids; "
	fi
	# VM2 measures its round trips against an echo in VM1 and vice versa.
	[ "$dir" = vm2-vm1 ] && vm1_cmd+="$TRAFFIC echo --bind $VM1_IP:$((5500 + i)) --idle 3 --timeout 900 </dev/null >/dev/null 2>&1 & echo \$! >>$OUT-pids; "
done
# (echoes for VM1-initiated round trips run here in VM2, started above)
vm1 "rm -f $OUT-*; $vm1_cmd sleep 1"
sleep 1

# cpu: the switch's and both VMs' CPU seconds and the runner's clock (JSON).
cpu() { host cpu "$SWITCH" vm1 vm2 && echo "$HOST_OUT"; }

for i in "${order[@]}"; do
	read -r dir size <<<"${runs[$i]}"
	args="--seconds $RUN_S --size $((size - 28))"
	c0=$(cpu)
	if [ "$dir" = vm1-vm2 ]; then
		vm1 "$TRAFFIC send --to $VM2_IP:$((5400 + i)) $args"
		send=$HOST_OUT
	else
		send=$("$TRAFFIC" send --to "$VM1_IP:$((5400 + i))" $args 2>&1)
	fi
	c1=$(cpu)
	echo "$dir $size $send" >"$OUT/send-$i"
	echo "\"cpu0\":${c0:-null},\"cpu1\":${c1:-null}" >"$OUT/cpu-$i"
done

# Round trips: VM2's in a row here, VM1's in a row in one command there.
vm1_cmd=
for i in "${!runs[@]}"; do
	read -r dir size <<<"${runs[$i]}"
	args="-n $RTT_N --size $((size - 28)) --wait-ms 100 --seconds 6"
	if [ "$dir" = vm2-vm1 ]; then
		echo "$dir $size $("$TRAFFIC" rtt --to "$VM1_IP:$((5500 + i))" $args 2>&1)" >"$OUT/rtt-$i"
	else
		vm1_cmd+="echo \"$i \$($TRAFFIC rtt --to $VM2_IP:$((5500 + i)) $args 2>&1)\"; "
	fi
done
if [ -n "$vm1_cmd" ]; then
	vm1 "$vm1_cmd"
	while read -r i out; do
		read -r dir size <<<"${runs[$i]}"
		echo "$dir $size $out" >"$OUT/rtt-$i"
	done <<<"$HOST_OUT"
fi

# Collect: receivers end 1 s after their traffic; SIGTERM ends a receiver
# that never saw any (it still prints its summary).
sleep 1.5
cleanup
wait
vm1 "kill \$(cat $OUT-pids) 2>/dev/null; sleep 0.5; for f in $OUT-recv-*; do echo \"\${f##*-} \$(tail -n 1 \$f)\"; done"
while read -r i out; do
	echo "$out" >"$OUT/recv-$i"
done <<<"$HOST_OUT"

for i in "${!runs[@]}"; do
	read -r dir size send <"$OUT/send-$i"
	recv=$(tail -n 1 "$OUT/recv-$i")
	bench "\"kind\":\"throughput\",\"dir\":\"$dir\",\"size\":$size,\"send\":${send:-null},\"recv\":${recv:-null},$(cat "$OUT/cpu-$i")"
	grep -q '"received":[1-9]' <<<"$recv" && grep -q '"corrupt":0,"duplicates":0,' <<<"$recv"
	log_test $? "$path $dir $size B: traffic moved intact"
done
for i in "${!runs[@]}"; do
	read -r dir size out <"$OUT/rtt-$i" || out=
	bench "\"kind\":\"rtt\",\"dir\":\"$dir\",\"size\":$size,\"rtt\":${out:-null}"
	# Round trips lost are data (DPDK drops on IOTLB misses); corrupt ones
	# or no summary are not.
	grep -q '"corrupt":0,' <<<"$out"
	log_test $? "$path $dir $size B: round trips measured, none corrupt"
done

# ndr_probe I RATE PORT: one paced run of run I's size and direction
# against a fresh receiver on PORT; prints the probe as JSON (rate, sent,
# received, lost, send_pps), its counts null when a side printed no summary.
ndr_probe()
{
	local i=$1 rate=$2 port=$3 dir size send recv rp
	read -r dir size <<<"${runs[$i]}"
	local args="--rate $rate --seconds $NDR_S --size $((size - 28))"
	local rargs="-n 0 --idle 1 --timeout $((NDR_S + 30)) --json"
	if [ "$dir" = vm1-vm2 ]; then
		"$TRAFFIC" recv --bind "$VM2_IP:$port" $rargs >"$OUT/ndr-recv" 2>&1 &
		rp=$!
		sleep 0.3
		vm1 "$TRAFFIC send --to $VM2_IP:$port $args"
		send=$HOST_OUT
		wait "$rp"
		recv=$(tail -n 1 "$OUT/ndr-recv")
	else
		# Bound before the first datagram: one sent earlier is refused
		# (ICMP), not lost, but the receiver would not count it either.
		vm1 "$TRAFFIC recv --bind $VM1_IP:$port $rargs </dev/null >$OUT-ndr 2>&1 & echo \$! >$OUT-ndr-pid; sleep 0.3"
		send=$("$TRAFFIC" send --to "$VM1_IP:$port" $args 2>&1)
		vm1 "p=\$(cat $OUT-ndr-pid); while kill -0 \$p 2>/dev/null; do sleep 0.2; done; tail -n 1 $OUT-ndr"
		recv=$HOST_OUT
	fi
	jq -nc --argjson rate "$rate" --argjson s "$send" --argjson r "$recv" \
		'{rate: $rate, sent: $s.sent, received: $r.received, lost: $r.lost,
		  send_pps: $s.pps}' 2>/dev/null ||
		echo "{\"rate\":$rate,\"sent\":null,\"received\":null,\"lost\":null,\"send_pps\":null}"
}

# Zero-loss rate of every run (VPCI_BENCH_NDR=1), after everything else so
# that it changes none of the figures above.
ndr_port=5600
if [ "$NDR" = 1 ]; then
	for i in "${order[@]}"; do
		read -r dir size <<<"${runs[$i]}"
		# The receiver's summary is its last line (as for the records).
		goodput=$(tail -n 1 "$OUT/recv-$i" | jq -r '.pps // 0 | floor' 2>/dev/null)
		isnum "$goodput" || goodput=0
		lo=0 hi=$((goodput * 5 / 4 + 100)) best=0 probes= ok=0 k=0
		# No unpaced rate to search below: no figure (not one from 0..100).
		[ "$goodput" -gt 0 ] || { ok=1; diag "$dir $size B: no unpaced receive rate"; }
		for ((k = 0; ok == 0 && k < NDR_STEPS; k++)); do
			rate=$(((lo + hi) / 2))
			ndr_port=$((ndr_port + 1))
			p=$(ndr_probe "$i" "$rate" "$ndr_port")
			probes+="${probes:+,}$p"
			if jq -e '.sent > 0 and .received == .sent and .lost == 0' <<<"$p" >/dev/null; then
				lo=$rate
				best=$(jq -n --argjson a "$best" --argjson b "$(jq '.send_pps' <<<"$p")" \
					'[$a, $b] | max')
			elif jq -e '.sent != null and .received != null' <<<"$p" >/dev/null; then
				hi=$rate
			else
				ok=1
				break
			fi
		done
		bench "\"kind\":\"ndr\",\"dir\":\"$dir\",\"size\":$size,\"seconds\":$NDR_S,\"ndr_pps\":$([ $ok = 0 ] && echo "$best" || echo null),\"probes\":[$probes]"
		log_test $ok "$path $dir $size B: zero-loss rate searched ($k probes, $(printf '%.0f' "$best") pps)"
	done
fi
diag "measured in ${SECONDS}s"

[ "$NIC" = vhost-pci ] && ethtool -S "$ifname" | grep -E 'fault|stall' | grep -vE ': 0$' | sed 's/^/# /'
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
