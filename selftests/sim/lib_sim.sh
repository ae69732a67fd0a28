#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers for the tests against the peer simulator (topology vm2sim):
# VM2's driver is the device, VM1 is vpci-sim on the host, started through
# the runner ("host [timeout=N] [bg NAME] vpci-sim ...", "host wait NAME").
# Sourced after lib.sh.

# sim_setup: load the driver, bring the interface up without any traffic of
# its own (no IPv6, no address) and reflect every frame from VM1 back to it
# (ingress -> egress of the same device).  Sets $ifname.
sim_setup()
{
	insmod "$VPCI_KO" || return 1
	local dev
	dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
	ifname=$(netdev_of "$dev")
	[ -n "$ifname" ] || return 1
	sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1"
	ip link set dev "$ifname" arp off
	ip link set dev "$ifname" up || return 1
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
	jq -r "$f" "$1" | sed 's/^/# /'
}
