#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
# vpci-timeout: 240
#
# Four queue pairs against the peer simulator (run with
# queues=4:vectors=9:smp=2: the backend wires 4 pairs, VM2's driver gets a
# vector per ring and two vCPUs to spread them over; with fewer pairs wired
# every case is a skip).  vpci-sim --queue-pairs 4 negotiates MQ as QEMU
# does and runs one flow per pair, all at once; VM2 reflects every frame on
# the pair it came in on (tc skbedit on egress, matched on the pair the
# simulator writes into each frame: without it XPS would pick the TX queue
# by CPU and hash, and the flows would come back mixed).
#  (a) traffic on all four pairs: each flow lossless, in order, back on its
#      own pair, and each pair's ethtool -S counters in VM2 moved both ways;
#  (b) avail-jump on pair 2's TX ring: only vq2_rx_fault_ring moves, the
#      other three flows stay lossless in the same run;
#  (c) after the simulator reconnects, a clean run on all four pairs,
#      pair 2 included.
# VPCI_TEST_MQ_INJECT_PAIR and VPCI_TEST_MQ_SIM_PAIRS change only what the
# simulator is asked for (the expectations stay pair 2 and 4 pairs): with
# either changed the test must fail (how it was shown to catch a fault on
# the wrong pair and a pair not set up).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

npairs=4
fpair=2
inject_pair=${VPCI_TEST_MQ_INJECT_PAIR:-$fpair}
sim_pairs=${VPCI_TEST_MQ_SIM_PAIRS:-$npairs}
frames=2000
rate=1000	# per pair: 4 000 frames/s each way in all
nplan=19

tap_begin $nplan

sim_setup
rc=$?
# "max current" of ethtool -l Combined.
pairs_l() { timeout 10 ethtool -l "$ifname" | awk '/^Combined:/ { print $2 }' | xargs; }
wired=$(pairs_l)
diag "ethtool -l combined (max current): '$wired'; VM2 vCPUs: $(nproc)"
if [ $rc -ne 0 ] || [ "${wired% *}" != "$npairs" ]; then
	[ $rc -ne 0 ] && log_test 1 "driver loaded" ||
		log_test "$KSFT_SKIP" "needs $npairs queue pairs wired (run as sim/multiqueue.sh:queues=4:vectors=9:smp=2)"
	for ((i = 1; i < nplan; i++)); do
		log_test "$KSFT_SKIP" "not run"
	done
	tap_end
fi
log_test 0 "driver loaded, $ifname up, $npairs queue pairs wired"

# Each reflected frame leaves on the queue of its pair: the pair is bits
# 48..55 of the frame's sequence number (little endian at frame offset 18),
# byte 24 of the frame, byte 10 past the Ethernet header where u32 counts.
# The first filter loads cls_u32 and act_skbedit over 9p: on a loaded host
# that took more than 10 s once (the pair 0 filter missing, seen); load
# them first, with time to spare.
timeout 60 modprobe -q cls_u32
timeout 60 modprobe -q act_skbedit
rc=0
for ((p = 0; p < npairs; p++)); do
	timeout 30 tc filter add dev "$ifname" egress protocol all prio 1 u32 \
		match u8 "$p" 0xff at 10 action skbedit queue_mapping "$p"
	r=$?
	[ $r -eq 0 ] || { rc=1; diag "tc filter for pair $p: exit $r"; }
done
[ "$(timeout 10 tc filter show dev "$ifname" egress | grep -c 'skbedit queue_mapping')" = "$npairs" ] || rc=1
diag_lines "$(timeout 10 tc filter show dev "$ifname" egress | grep -E 'match|skbedit')"
log_test $rc "egress: each pair's reflected frames on that pair's TX queue (u32 + skbedit)"

# snap NAME: every ethtool -S counter into the associative array NAME.
snap()
{
	local -n a=$1
	local k v
	a=()
	# (a here-string: the guest has no /dev/fd for a process substitution)
	while read -r k v; do
		[ -n "$k" ] && a[${k%:}]=$v
	done <<<"$(timeout 10 ethtool -S "$ifname" | awk 'NF == 2 && $1 ~ /:$/')"
}
# delta OLD NEW KEY: NEW[KEY] - OLD[KEY]; empty (not a number) if either is missing.
delta()
{
	local -n o=$1 n=$2
	isnum "${o[$3]}" "${n[$3]}" && echo $((n[$3] - o[$3]))
}
# moved_faults OLD NEW: the fault counters that moved, "name+N" each.
moved_faults()
{
	local -n o=$1 n=$2
	local k out=
	for k in $(printf '%s\n' "${!n[@]}" | grep fault_ | sort); do
		[ "${n[$k]}" != "${o[$k]}" ] && out+=" $k+$(( n[$k] - ${o[$k]:-0} ))"
	done
	echo "${out# }"
}
# nfault_counters NEW: how many per-queue fault counters ethtool -S has (a parse
# that found none must not pass as "none moved").
nfault_counters()
{
	local -n n=$1
	printf '%s\n' "${!n[@]}" | grep -c '^vq[0-9]*_\(rx\|tx\)_fault_'
}

# start_sim NAME ARGS...: the simulator in the background with four pairs,
# mixed sizes, paced; "host wait NAME" collects it.
start_sim()
{
	local name=$1

	shift
	host timeout=60 bg "$name" vpci-sim $(sim_args) --queue-pairs "$sim_pairs" \
		--iommu-policy identity --mode interrupt --direction both --size 60-1514 \
		--rate "$rate" --connect-wait-ms 5000 --watchdog-s 25 \
		--json "$VPCI_RUN/sim-$name.json" "$@"
}
# stalled_state: what VM2's driver and the backend hold while a session is
# stuck (the simulator's watchdog ends it at 25 s; after that the state is
# gone): queue states, what the driver applied, the backend's status.
stalled_state()
{
	diag_lines "$(cat /sys/kernel/debug/vhost_pci_net/*/state 2>/dev/null)"
	diag_lines "$(ethtool -S "$ifname" | grep -E 'packets|stalls|misses|kicks|irq' | grep -v ': 0$' | xargs)"
	host vpci-ctl --control-socket "$VPCI_CTL" status
	diag_lines "$(echo "$HOST_OUT" | head -n 60)"
	diag_lines "$(dmesg | tail -n 10)"
}
# finish NAME: wait for the run, show its summary; sets J to its JSON file.
# A run of a few seconds still going after 15 s is stuck: show why first.
finish()
{
	local t0=$SECONDS

	while host running "$1"; do
		if [ $((SECONDS - t0)) -ge 15 ]; then
			diag "$1: the simulator is still running after 15 s; state now:"
			stalled_state
			break
		fi
		sleep 1
	done
	host wait "$1"
	local rc=$?
	J=$VPCI_RUN/sim-$1.json
	if [ ! -s "$J" ]; then
		diag "$1: no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"
		return 1
	fi
	sim_show "$J"
	diag_lines "$(jq -r '.pairs[] | "pair \(.pair): sent \(.tx.sent) back \(.rx.unique) lost \(.rx.lost) reord \(.rx.reordered) on other rings \(.rx.on_other_rings) from other pairs \(.rx.from_other_pairs)"' "$J")"
	return $rc
}
# pair_clean P N: pair P of $J sent N frames and got each back once, in
# order, uncorrupted, at most $early of them on another pair's RX ring:
# frames VM2 reflects before its stack has followed VM1 to four TX queues
# leave on queue 0 (skbedit only maps to a queue that exists).  12 to 42 a
# pair were seen (more as the host is busier), so a quarter of them.
early=$((frames / 4))
pair_clean()
{
	jq -e --argjson p "$1" --argjson n "$2" --argjson e "$early" '.pairs[$p] | .pair == $p and
		.ok and .tx.sent == $n and .tx.completed == $n and .rx.unique == $n and
		.rx.lost == 0 and .rx.duplicates == 0 and .rx.reordered == 0 and .rx.corrupt == 0 and
		.rx.out_of_range == 0 and .rx.on_other_rings <= $e and
		.tx.bad_used == 0 and .rx.bad_used == 0' "$J" >/dev/null
}
# vm2_moved P N OLD NEW: VM2 counted at least N frames from VM1 on pair P,
# and sent at least N - $early to VM1 on it.
vm2_moved()
{
	local rx tx
	rx=$(delta "$3" "$4" "vq$1_rx_packets")
	tx=$(delta "$3" "$4" "vq$1_tx_packets")
	diag "VM2 pair $1: vq$1_rx_packets +${rx:-?} (from VM1), vq$1_tx_packets +${tx:-?} (to VM1)"
	isnum "$rx" "$tx" && [ "$rx" -ge "$2" ] && [ "$tx" -ge $(($2 - early)) ]
}

# (a) All four pairs at once.
declare -A s0 s1 s2 s3
# VM2's stack follows VM1's pairs asynchronously and goes back to one when
# VM1 leaves: a run of two seconds is over before ethtool -l, slow under
# TCG, can be relied on to see it; the driver's log line stays.
in_use() { dmesg | grep -c "$ifname: $npairs queue pair(s) in use"; }
in_use0=$(in_use)
snap s0
start_sim clean -n "$frames" --drain-ms 3000
finish clean
rc_a=$?
snap s1
[ "$(in_use)" -gt "$in_use0" ]
rc=$?
diag "driver: $(dmesg | grep "$ifname: [0-9]* queue pair(s) in use" | tail -n 2 | sed 's/^\[[^]]*\] //' | xargs)"
log_test $rc "(a) VM2 followed VM1's $npairs pairs ($npairs queue pair(s) in use)"
jq -e --argjson n "$npairs" '.queue_pairs == $n and (.pairs | length) == $n and
	.canaries.ok and .frontend.queue_num >= $n' "$J" >/dev/null 2>&1 || rc_a=1
for ((p = 0; p < npairs; p++)); do
	[ $rc_a -eq 0 ] && pair_clean "$p" "$frames" && vm2_moved "$p" "$frames" s0 s1
	log_test $? "(a) pair $p: $frames frames each way at $rate/s beside the others, lossless, in order, back on its own ring (after the first $early at most); VM2's vq${p} counters moved both ways"
done
moved=$(moved_faults s0 s1)
nf=$(nfault_counters s1)
diag "fault counters: $nf per-queue; moved: '${moved:-none}'"
[ "$nf" -ge $((12 * npairs)) ] && [ -z "$moved" ]
log_test $? "(a) no fault counted (of $nf per-queue fault counters)"

# (b) avail-jump on pair 2's TX ring (VM2's receive side of pair 2).
start_sim fault -n "$frames" --drain-ms 2000 --fault avail-jump --fault-pair "$inject_pair"
finish fault
rc_b=$?
snap s2
jq -e --argjson p "$fpair" '.fault.name == "avail-jump" and .fault.pair == $p and
	.fault.queue == "tx" and .pairs[$p].fault != null' "$J" >/dev/null 2>&1
log_test $? "(b) the simulator moved pair $fpair's TX avail index by ring size + 1 ($(jq -r '.fault.outcome' "$J" 2>/dev/null))"
moved=$(moved_faults s1 s2)
diag "fault counters moved: '${moved:-none}'"
[[ $moved =~ ^vq${fpair}_rx_fault_ring\+[0-9]+$ ]]
log_test $? "(b) exactly pair $fpair's counter moved: vq${fpair}_rx_fault_ring"
for ((p = 0; p < npairs; p++)); do
	[ "$p" -eq "$fpair" ] && continue
	[ $rc_b -eq 0 ] && pair_clean "$p" "$frames" && vm2_moved "$p" "$frames" s1 s2
	log_test $? "(b) pair $p beside the fault: $frames frames each way, lossless, in order"
done
[ $rc_b -eq 0 ] || diag_lines "$(dmesg | grep -E 'queue [0-9]|fault' | tail -n 10)"

# queues: the driver's queue states (debugfs).
queues() { diag_lines "$(grep -h '^queue' /sys/kernel/debug/vhost_pci_net/*/state 2>/dev/null)"; }

# (c) The simulator reconnects: every pair clean, pair 2 running again.
queues
start_sim again -n "$frames" --drain-ms 3000
finish again
rc_c=$?
if [ $rc_c -ne 0 ]; then
	# What the driver applied last against what the backend published.
	diag_lines "$(grep -hv '^queue' /sys/kernel/debug/vhost_pci_net/*/state 2>/dev/null)"
	queues
	host vpci-ctl --control-socket "$VPCI_CTL" status
	diag_lines "$(echo "$HOST_OUT" | head -n 40)"
	diag_lines "$(dmesg | tail -n 15)"
fi
snap s3
for ((p = 0; p < npairs; p++)); do
	[ $rc_c -eq 0 ] && pair_clean "$p" "$frames" && vm2_moved "$p" "$frames" s2 s3
	log_test $? "(c) after the reconnect, pair $p: $frames frames each way lossless, in order"
done
moved=$(moved_faults s2 s3)
[ -z "$moved" ]
log_test $? "(c) no fault counted after the reconnect (${moved:-none})"
[ -z "$moved" ] || queues

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
