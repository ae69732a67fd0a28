#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
# vpci-timeout: 300
#
# VM1 goes away and comes back before VM2's driver looked at the control
# area: its next config pass never sees the rings disabled, only rings
# enabled again, at the same addresses, from index 0.  The driver must tell
# the new run of each ring from the old one (vq_config.epoch) and start it
# at its base; a queue the old run broke must come back too.  debugfs
# hold_config keeps the driver from looking (as a busy guest may: CI saw
# this once, the clean run after faults.sh's avail-jump stalled at its
# first frame, the broken queue never restarted).
#
# Without the epoch the driver kept serving the old run's positions (a ring
# fault on the new rings) and kept the broken queue stopped: seen.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

tap_begin 16

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
dbg=/sys/kernel/debug/vhost_pci_net/$dev
hold=$dbg/hold_config

# start NAME ARGS...: a simulator run in the background (paced), with a
# watchdog short enough for a stalled run to fail here.
start()
{
	local name=$1

	shift
	host bg "$name" vpci-sim $(sim_args) --iommu-policy identity --mode interrupt \
		--direction both --size 60-1514 --connect-wait-ms 5000 \
		--watchdog-s 30 --json "$VPCI_RUN/sim-$name.json" "$@"
}

# lossless NAME N: the run's summary shows N frames each way, none lost,
# canaries intact (the caller waited for the run with "host wait").
lossless()
{
	local j=$VPCI_RUN/sim-$1.json

	[ -s "$j" ] || { diag "$1: no summary: $(echo "$HOST_OUT" | tail -n 3 | xargs)"; return 1; }
	sim_show "$j"
	jq -e --argjson n "$2" '.ok and .rx.unique == $n and .rx.lost == 0 and .canaries.ok' \
		"$j" >/dev/null ||
		{ sim_explain "$j" "-"; return 1; }
}

# faults: every fault counter summed.
faults()
{
	ethtool -S "$ifname" | awk '$1 ~ /fault_/ { n += $2 } END { print n + 0 }'
}

# epochs Q: "SEEN/PUBLISHED" for queue Q: the run the driver started last,
# and the one the backend publishes now.
epochs()
{
	sed -n "s/^queue $1: .* epoch=\([0-9]*\/[0-9]*\)$/\1/p" "$dbg/state"
}

# new_run STATE0 STATE1: both rings enabled in a run the driver has not
# started yet, while the driver still holds queue 0 and 1 in STATE0 and
# STATE1 (running, broken) from the old run: it did not see the reset.
new_run()
{
	local q e st=("$1" "$2")

	for q in 0 1; do
		e=$(epochs $q)
		[ -n "$e" ] && [ "${e%/*}" != "${e#*/}" ] &&
			grep -q "^queue $q: ${st[$q]} enabled=1 " "$dbg/state" || return 1
	done
}

# held_reconnect N WHAT STATE0 STATE1 [CLEAN]: with the driver held, the
# running simulator ("oldN", lossless if CLEAN) ends and a new one ("newN",
# 1000 frames) connects and sets up; the driver looks only then.  The new
# run gives up only after 5 s without progress: the driver is held meanwhile.
held_reconnect()
{
	echo 1 > "$hold" || return 1
	host wait "old$1"
	[ -z "$5" ] || lossless "old$1" 3000 || diag "$2: the first run was not clean"
	start "new$1" -n 1000 --rate 5000 --drain-ms 5000
	wait_until 20 new_run "$3" "$4"
	log_test $? "$2: a new run of both rings is published while the driver has not looked ($3, $4)"
	diag_lines "$(grep '^queue' "$dbg/state")"
	echo 0 > "$hold"
	host wait "new$1"
	lossless "new$1" 1000
}

[ -w "$hold" ]
log_test $? "debugfs has hold_config"

# 1. Both queues running when VM1 goes: they must not go on at the old
#    run's positions (3000) on rings that start again at 0.  The hold comes
#    while the first run still sends (3000 frames at 1500/s): the rest of
#    its frames need no config pass (identity: nothing left to miss).  In
#    interrupt mode, and in poll mode, where NAPI keeps reading the ring
#    while VM1 sets it up afresh (the datapath must stop when VM1's ring is
#    disabled, not at the next config pass).
# running_case N MODE: case 1 with the driver in MODE (interrupt, poll).
running_case()
{
	local n=$1 mode=$2 rx0 f0 f1

	ethtool --set-priv-flags "$ifname" poll-mode "$([ "$mode" = poll ] && echo on || echo off)"
	rx0=$(sim_stat vq0_rx_packets)
	f0=$(faults)
	start "old$n" -n 3000 --rate 1500 --drain-ms 3000
	flowing() { [ "$(sim_stat vq0_rx_packets)" -ge $((rx0 + 300)) ]; }
	wait_until 30 flowing
	log_test $? "$mode mode, a first run: VM1's frames reach VM2"
	held_reconnect "$n" "$mode mode, running queues" running running clean
	log_test $? "$mode mode, running queues, reconnect unseen: the new run is lossless (1000 frames each way)"
	# VM1 kicked the new rings before the pass restarted the queues: the
	# datapath must leave them alone, not read them as corrupt.
	f1=$(faults)
	diag "fault counters: $f0 before, $f1 after"
	[ -n "$f1" ] && [ "$f1" = "$f0" ]
	log_test $? "$mode mode, running queues: no fault counted (the old run's indexes never met the new rings)"
}
running_case 1 interrupt
running_case 3 poll
ethtool --set-priv-flags "$ifname" poll-mode off

# 2. VM1's TX ring broken by a fault (avail index jumped): the queue stays
#    stopped until VM1 resets the ring, and here the reset is unseen.
f0=$(sim_stat vq0_rx_fault_ring)
all0=$(faults)
start old2 -n 2000 --rate 5000 --fault avail-jump --drain-ms 3000
broke() { [ "$(sim_stat vq0_rx_fault_ring)" -gt "$f0" ]; }
wait_until 30 broke
log_test $? "avail-jump broke the driver's RX queue (vq0_rx_fault_ring $f0 -> $(sim_stat vq0_rx_fault_ring))"
held_reconnect 2 "broken queue" running broken
log_test $? "broken queue, reconnect unseen: the new run is lossless (1000 frames each way)"
all1=$(faults)
diag "fault counters: $all0 before, $all1 after"
[ -n "$all1" ] && [ "$all1" = $((all0 + 1)) ]
log_test $? "broken queue: the avail-jump is the one fault counted"

[ "$(cat "$hold")" = 0 ]
log_test $? "hold_config is released"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
