#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
# vpci-timeout: 900
#
# TCP between the guests, guest side (scripts/bench-tcp.sh runs it):
# iperf3 between VM2 and VM1 with TSO on and off on both guests (ethtool
# -K, same boot: "off" is the path before TSO was negotiated, every
# segment its own chain) and with 1, 2, 4 ... queue pairs enabled by VM1
# (ethtool -L; VM2 follows).  Over the vhost-pci path (topology vm1vm2)
# or, with VPCI_BENCH_NIC=virtio (topology vm1dpdkvm2 sets it), over
# DPDK testpmd, where VM2 is an ordinary virtio-net guest.  Every figure
# goes out as a "# TCP {json}" line; the TAP tests only say that each run
# moved data.
#
# Knobs (from the host): VPCI_BENCH_SECONDS (per run, default 5),
# VPCI_BENCH_ROUNDS (default 2), VPCI_BENCH_STREAMS (streams per run, a
# list, default "4"), VPCI_BENCH_TSO (default "on off"), VPCI_BENCH_IOMMU
# and VPCI_BENCH_PATH (labels).
source "$(dirname "$0")/../lib.sh"
set -u

SECS=${VPCI_BENCH_SECONDS:-5}
ROUNDS=${VPCI_BENCH_ROUNDS:-2}
read -r -a STREAMS <<<"${VPCI_BENCH_STREAMS:-4}"
read -r -a TSOS <<<"${VPCI_BENCH_TSO:-on off}"
NIC=${VPCI_BENCH_NIC:-vhost-pci}
PATH_LABEL=${VPCI_BENCH_PATH:-$([ "$NIC" = virtio ] && echo dpdk || echo vhost-pci)}
vm1() { host vm vm1 "$1"; }
pairs() { ethtool -l "$ifname" | awk '/^Combined:/ { print $2 }' | xargs; }
ntx() { ls -d /sys/class/net/"$ifname"/queues/tx-* | wc -l; }
follows() { [ "$(pairs)" = "$n $1" ] && [ "$(ntx)" = "$1" ]; }

nic_up()
{
	[ "$NIC" = virtio ] || { vpci_up; return; }
	modprobe virtio_net && wait_until 10 virtio_netdev >/dev/null || return 1
	ifname=$(virtio_netdev)
	ip addr add "$VPCI_VM2_ADDR" dev "$ifname" && ip link set dev "$ifname" up
}

nic_up && wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null || {
	echo "1..0 # VM1 not reachable"
	exit "$KSFT_FAIL"
}
n=$(pairs)
n=${n% *}
isnum "$n" || n=1
counts=()
for ((k = 1; k <= n; k *= 2)); do
	counts+=("$k")
done
tap_begin $((ROUNDS * ${#TSOS[@]} * ${#counts[@]} * ${#STREAMS[@]} * 2))
diag "path $PATH_LABEL ($NIC), pairs wired $n, counts ${counts[*]}, streams ${STREAMS[*]}," \
	"TSO ${TSOS[*]}, $SECS s a run, VM2 $(nproc) vCPUs"

# One short run first, not counted: the first connection of a boot pays
# for ARP, page faults and TCG's translation of the paths it takes.
timeout 40 iperf3 -c "$VPCI_VM1_IP" -t 2 >/dev/null 2>&1 || diag "warm-up run failed"

for ((round = 1; round <= ROUNDS; round++)); do
	for tso in "${TSOS[@]}"; do
		ethtool -K "$ifname" tso "$tso" >/dev/null 2>&1
		vm1 "ethtool -K eth0 tso $tso; ethtool -k eth0 | awk '/^tcp-segmentation-offload:/ { print \$2 }'"
		vm1_tso=$(echo "$HOST_OUT" | tail -n 1)
		for k in "${counts[@]}"; do
			if [ "$n" -gt 1 ]; then
				vm1 "ethtool -L eth0 combined $k 2>&1; ethtool -l eth0 | awk '/^Combined:/ { print \$2 }' | tail -n 1" ||
					diag "VM1: ethtool -L combined $k: $HOST_OUT"
				wait_until 30 follows "$k" ||
					diag "VM2 did not follow $k pairs: ethtool -l $(pairs), VM1 current $HOST_OUT"
			fi
			for streams in "${STREAMS[@]}"; do
			for dir in vm2-vm1 vm1-vm2; do
				[ "$dir" = vm1-vm2 ] && rev=-R || rev=
				out=$(timeout $((SECS + 30)) iperf3 -c "$VPCI_VM1_IP" -t "$SECS" \
					-P "$streams" -J $rev 2>/dev/null)
				mbps=$(jq -r '.end.sum_received.bits_per_second / 1e6 | floor' <<<"$out" 2>/dev/null)
				retr=$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out" 2>/dev/null)
				err=$(jq -r '.error // empty' <<<"$out" 2>/dev/null)
				[ -z "$err" ] || diag "iperf3: $err"
				# What was in force, not what was asked for: a figure
				# under the wrong label fails its test.
				have_tso=$(ethtool -k "$ifname" | awk '/^tcp-segmentation-offload:/ { print $2 }')
				have_pairs=$(ntx)
				echo "# TCP {\"path\":\"$PATH_LABEL\",\"iommu\":\"${VPCI_BENCH_IOMMU:-}\",\"round\":$round,\"tso\":\"$tso\",\"pairs\":$k,\"streams\":$streams,\"dir\":\"$dir\",\"mbps\":${mbps:-null},\"retransmits\":${retr:-null},\"vm1_tso\":\"$vm1_tso\",\"vm2_tso\":\"$have_tso\",\"vm2_tx_queues\":${have_pairs:-null}}"
				isnum "$mbps" && [ "$mbps" -gt 0 ] && [ "$have_tso" = "$tso" ] &&
					[ "$vm1_tso" = "$tso" ] && [ "$have_pairs" = "$k" ]
				log_test $? "round $round, $PATH_LABEL, TSO $tso (VM1: $vm1_tso, VM2: $have_tso), $k pair(s) (VM2: $have_pairs TX queues), $streams stream(s), $dir: ${mbps:-?} Mbit/s"
			done
			done
		done
	done
done
tap_end
