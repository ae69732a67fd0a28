#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers for the tests against the peer simulator (topology vm2sim):
# VM2's driver is the device, VM1 is vpci-sim on the host, started through
# the runner ("host [timeout=N] [bg NAME] vpci-sim ...", "host wait NAME").
# Sourced after lib.sh.

# sim_setup [PARAM=VALUE...]: load the driver (with these module
# parameters), bring the interface up without any traffic of its own (no
# IPv6, no address) and reflect every frame from VM1 back to it (ingress ->
# egress of the same device).  Sets $ifname.
sim_setup()
{
	insmod "$VPCI_KO" "$@" || return 1
	local dev
	dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
	ifname=$(netdev_of "$dev")
	[ -n "$ifname" ] || return 1
	sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1"
	ip link set dev "$ifname" arp off
	ip link set dev "$ifname" up || return 1
	# Reflected frames wait in VM2's egress qdisc while VM1's RX buffers
	# are short (in transient mode each one costs a miss): the standing
	# queue is up to the simulator's window (a ring, 255 frames), hundreds
	# of ms under TCG.  The default fq_codel drops at a sojourn over 5 ms,
	# a loss the driver never saw; a FIFO longer than the window never
	# drops, so what vpci-sim counts lost is the driver's.
	tc qdisc replace dev "$ifname" root pfifo limit 1000 || return 1
	tc qdisc add dev "$ifname" clsact &&
		tc filter add dev "$ifname" ingress matchall \
			action mirred egress redirect dev "$ifname"
}

# sim_stat NAME: one ethtool -S counter.
sim_stat()
{
	ethtool -S "$ifname" | awk -v k="$1:" '$1 == k { print $2 }'
}

# sim_args: what every run passes (socket, memory file, RAM size).
sim_args()
{
	echo "-s $VPCI_SIM_SOCK --mem-file $VPCI_MEM --ram-size $VPCI_SIM_RAM -q"
}

# sim_json FILE FILTER: jq over a simulator summary (written on the host
# into the run directory, read here over 9p).
sim_json()
{
	jq -r "$2" "$1"
}

# sim_show FILE: the summary as diagnostics.
sim_show()
{
	local f='"\(.policy) \(.seconds*100|round/100)s: sent \(.tx.sent) '
	f+='completed \(.tx.completed), back \(.rx.unique) lost \(.rx.lost) '
	f+='dup \(.rx.duplicates) reord \(.rx.reordered) corrupt \(.rx.corrupt), '
	f+='tx \(.tx.pps|round)/s rx \(.rx.pps|round)/s, '
	f+='misses \(.frontend.iotlb.misses), canaries \(.canaries.ok)"'
	diag_lines "$(jq -r "$f" "$1")"
}

# sim_drops: "tx_dropped N qdisc_dropped M" for $ifname, the drops VM2's
# stack counts that vpci-sim would see as lost frames.
sim_drops()
{
	local txd qd

	txd=$(cat "/sys/class/net/$ifname/statistics/tx_dropped")
	qd=$(tc -s qdisc show dev "$ifname" root |
		sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -n1)
	echo "tx_dropped ${txd:-?} qdisc_dropped ${qd:-?}"
}

# sim_explain FILE DROPS_BEFORE: what would explain a run that lost or
# stalled: VM2's drops then and now, the queue states, the run's latency.
sim_explain()
{
	diag "drops before: $2; after: $(sim_drops)"
	diag_lines "$(jq -r '"latency p50 \(.rx.latency.p50_us|round) us, max \(.rx.latency.max_us|round) us; "
		+ "misses \(.frontend.iotlb.misses), unanswered \(.frontend.iotlb.misses_unanswered)"' \
		"$1" 2>/dev/null)"
	diag_lines "$(grep -h '^queue' /sys/kernel/debug/vhost_pci_net/*/state 2>/dev/null)"
}
