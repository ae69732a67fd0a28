#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
#
# TSO both ways against the peer simulator (issue 17): VM1 (vpci-sim
# --gso) sends TCP/IPv4 frames of 80..65535 bytes as a guest's stack hands
# them to virtio-net with TSO (a partial checksum; over 1514 bytes a TCPv4
# GSO header of gso_size 1448, in chains of 4 KiB buffers).  VM2's driver
# makes GSO skbs of them, tc mirred sends them back out of the same device,
# and the driver hands each to VM1 whole, GSO header filled in, over
# mergeable RX buffers (GUEST_TSO4).  vpci-sim checks every frame back
# exactly once, whole, byte for byte, with the header it was sent with.
# The driver's GSO counters must count exactly the TSO frames each way.
# A VM1 without GUEST_TSO4 gets the same frames as segments (VM2's stack
# segments them, the driver sends none whole), which vpci-sim puts back
# together.  Then a TSO frame with a broken GSO header among the traffic:
# a counted fault, every other frame still back.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

tap_begin 7

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
drops0=$(sim_drops)

ethtool -k "$ifname" | grep -qx 'tcp-segmentation-offload: on'
log_test $? "$ifname offers TSO"

# tso NAME POLICY N [ARGS...]: N TCP frames of 80..65535 bytes each way;
# with --no-guest-tso in ARGS they come back as segments.
tso()
{
	local name=$1 policy=$2 n=$3 j=$VPCI_RUN/sim-gso-$1.json back
	shift 3
	# What comes back, and what the driver sends VM1 whole.
	back='.rx.gso == .tx.gso and .guest_tso and .rx.segments == 0 and
		.rx.csum.partial == $n and $txg == .tx.gso'
	[[ " $* " == *" --no-guest-tso "* ]] &&
		back='.rx.gso == 0 and (.guest_tso | not) and .rx.segments > $n and
			.rx.csum.partial == .rx.segments and $txg == 0'
	local rx0 tx0
	rx0=$(sim_stat vq0_rx_gso)
	tx0=$(sim_stat vq0_tx_gso)
	host timeout=200 vpci-sim $(sim_args) --iommu-policy "$policy" --mode interrupt \
		--direction both -n "$n" --gso --size 80-65535 --drain-ms 5000 \
		--connect-wait-ms 5000 --json "$j" "$@"
	local rc=$?
	[ -s "$j" ] || { diag "no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"; return 1; }
	sim_show "$j"
	local rxg=$(($(sim_stat vq0_rx_gso) - rx0)) txg=$(($(sim_stat vq0_tx_gso) - tx0))
	diag "TSO frames: sent $(jq .tx.gso "$j"), back whole $(jq .rx.gso "$j")," \
		"segments back $(jq .rx.segments "$j"); driver: from VM1 $rxg, to VM1 $txg;" \
		"checksums $(jq -c .rx.csum "$j")"
	[ "$rc" -eq 0 ] || return 1
	jq -e --argjson n "$n" --argjson rxg "$rxg" --argjson txg "$txg" '
		.ok and .gso and .tx.sent == $n and .rx.unique == $n and .rx.lost == 0 and
		.rx.corrupt == 0 and .rx.duplicates == 0 and .rx.reordered == 0 and
		.tx.gso > ($n / 2) and .rx.csum.bad == 0 and .canaries.ok and
		$rxg == .tx.gso and '"$back" "$j" >/dev/null &&
		[ "$(sim_drops)" = "$drops0" ] && return 0
	sim_explain "$j" "$drops0"
	return 1
}

tso identity identity 1500
log_test $? "identity: 1500 TCP frames of 80..65535 bytes each way, TSO frames whole both ways, lossless"
tso transient transient 300
log_test $? "transient (every buffer page a miss): 300 TCP frames each way, TSO whole, lossless"
ethtool --set-priv-flags "$ifname" poll-mode on
tso poll identity 800
rc=$?
ethtool --set-priv-flags "$ifname" poll-mode off
log_test $rc "identity, poll mode: 800 TCP frames each way, TSO whole, lossless"
tso segmented identity 400 --no-guest-tso
log_test $? "VM1 without GUEST_TSO4: 400 TCP frames each way, TSO frames back as segments, lossless"

# A TSO frame whose GSO header has gso_size 0, half way through 600: a
# descriptor fault the driver counts and drops; every other frame back.
f=$VPCI_RUN/sim-gso-fault.json
fault0=$(sim_stat vq0_rx_fault_desc)
host timeout=200 vpci-sim $(sim_args) --iommu-policy identity --mode interrupt \
	--direction both -n 600 --gso --size 80-65535 --fault gso-size-zero \
	--drain-ms 5000 --connect-wait-ms 5000 --json "$f"
rc=$?
if [ -s "$f" ]; then
	sim_show "$f"
	faults=$(($(sim_stat vq0_rx_fault_desc) - fault0))
	diag "fault $(jq -r .fault.outcome "$f"); vq0_rx_fault_desc +$faults"
	[ "$rc" -eq 0 ] && [ "$faults" -eq 1 ] && jq -e '.ok and .fault.outcome == "recovered" and
		.rx.unique == 600 and .rx.lost == 0 and .rx.corrupt == 0 and
		.rx.duplicates == 0 and .rx.csum.bad == 0 and .tx.gso > 0 and
		.rx.gso == .tx.gso and .canaries.ok' "$f" >/dev/null
	rc=$?
else
	diag "no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"
	rc=1
fi
log_test $rc "a TSO frame with gso_size 0 among TCP traffic: one vq0_rx_fault_desc, the other 600 back"

tap_end
