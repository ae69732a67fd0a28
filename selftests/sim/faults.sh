#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
# vpci-timeout: 600
#
# Every fault scenario of vpci-sim (--list-faults) against VM2's driver:
# the one ethtool -S counter the fault belongs to moves (and no other
# fault counter), the simulator's canaries (in unmapped and unposted pages,
# and past the used length of every RX buffer) are intact, and traffic
# recovers afterwards: a clean lossless run after the simulator reconnects
# (a reconnect disables and re-enables the rings, i.e. a device reset,
# which is how a queue stopped by a ring-level fault comes back).
#
# VM1's TX ring is the driver's receive side (vq0_rx_*, virtqueue 1), VM1's
# RX ring its transmit side (vq0_tx_*, virtqueue 0).  "vpci-nl monitor"
# listens on the driver's netlink events group during every fault run: the
# fault must also arrive there as an event with that queue and reason, and
# no event of another reason may (none at all for a fault no counter can see).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

policy=${VPCI_SIM_POLICY:-identity}
# Frames per run (the fault is injected half way); transient runs are slower.
n=2000
[ "$policy" = transient ] && n=1000

# fault -> the counter that must move ("-": none can, see docs/simulator.md)
declare -A expect=(
	[unmapped-iova]=vq0_rx_fault_miss_timeout
	[readonly-rx]=vq0_tx_fault_perm
	[straddle]=vq0_rx_fault_miss_timeout
	[wrap]=vq0_rx_fault_desc
	[zero-len]=vq0_rx_fault_desc
	[runt]=vq0_rx_fault_desc
	[past-memory]=vq0_rx_fault_desc
	[chain-loop]=vq0_rx_fault_chain
	[chain-too-long]=vq0_rx_fault_chain
	[avail-jump]=vq0_rx_fault_ring
	[head-out-of-range]=vq0_rx_fault_head
	[unmap-in-flight]=vq0_tx_fault_miss_timeout
	[ring-unmapped]=vq0_rx_fault_ring
	[double-post]=-
	[miss-after-unmap]=-
	[gso-size-zero]=vq0_rx_fault_desc
	[oversize-no-gso]=vq0_rx_fault_desc
)
# Faults another test runs: post-after-unmap is the early-ack check of
# sim/early_ack.sh (a correct driver's reaction there, and what catches a
# driver that acks before it is done).
declare -A elsewhere=(
	[post-after-unmap]=sim/early_ack.sh
)
# Faults the driver must absorb without losing a frame; the run must also
# show that the scenario fired (a miss VM1's IOMMU left unanswered).
declare -A lossless=(
	[miss-after-unmap]=1
)

host vpci-sim --list-faults
faults=$(echo "$HOST_OUT" | awk '{ print $1 }')
# The plan is the table above, not the simulator's list: a list that came
# back empty or short must fail, not shrink the plan.
nfaults=${#expect[@]}

tap_begin $((3 + 3 * nfaults))

listed=$(echo $faults | tr ' ' '\n' | sort | xargs)
known=$(printf '%s\n' "${!expect[@]}" "${!elsewhere[@]}" | sort | xargs)
[ -n "$listed" ] && [ "$listed" = "$known" ]
log_test $? "vpci-sim --list-faults names exactly the $nfaults faults this test expects" \
	"and the ${#elsewhere[@]} others run"
[ "$listed" = "$known" ] || diag "listed: ${listed:-none}; expected: $known"
faults=$(printf '%s\n' "${!expect[@]}" | sort | xargs)

NL=$VPCI_BUILD/userspace/vpci-nl

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"

# All fault counters as "name value" lines.
fault_counters()
{
	ethtool -S "$ifname" | awk '$1 ~ /fault_/ { sub(":", "", $1); print $1, $2 }'
}

sim_cmd()
{
	echo "vpci-sim $(sim_args) --iommu-policy $policy --mode interrupt" \
		"--direction both --size 60-1514 --rate 5000 --connect-wait-ms 5000 --watchdog-s 50" \
		"--json $VPCI_RUN/sim-$1.json $2"
}

# monitor_start: stream fault events (JSON lines) to /tmp/mon.out.
monitor_start()
{
	"$NL" --json monitor --timeout 120 >/tmp/mon.out 2>/tmp/mon.err &
	mon=$!
	wait_until 10 grep -q monitoring /tmp/mon.err
}

# monitor_check WANT: the events received match the expected counter WANT
# (vq0_rx_fault_R: queue 1, reason R; vq0_tx_fault_R: queue 0; "-": none).
monitor_check()
{
	local q r events

	kill -TERM "$mon" 2>/dev/null
	wait "$mon"
	events=$(jq -c 'select(.event == "fault") | {queue, reason, iova, len, access}' /tmp/mon.out)
	diag "events: $([ -z "$events" ] && echo none ||
		echo "$events" | sort | uniq -c | head -n 4 | xargs)"
	case $1 in
	-) [ -z "$events" ]; return ;;
	vq0_rx_fault_*) q=1; r=${1#vq0_rx_fault_} ;;
	vq0_tx_fault_*) q=0; r=${1#vq0_tx_fault_} ;;
	*) return 1 ;;
	esac
	[ -n "$events" ] &&
		echo "$events" | jq -se --argjson q "$q" --arg r "$r" \
			'all(.[]; .queue == $q and .reason == $r)' >/dev/null
}

# A fault run ends when no frame has moved for its drain time.  A fault the
# driver answers with a miss timeout stops its queue for that long first, so
# its run waits the timeout twice over on top of the usual 4 s: a guest slowed
# down by its host must not end the run before the driver reacted (CI saw a
# 4 s drain expire first: nothing counted, no event).
miss_ms=$(cat /sys/module/vhost_pci_net/parameters/miss_timeout_ms)
diag "driver miss timeout: ${miss_ms:-?} ms"

for f in $faults; do
	want=${expect[$f]:-unknown}
	drain=4000
	[[ $want == *_miss_timeout ]] && drain=$((4000 + 2 * ${miss_ms:-2000}))
	fault_counters > /tmp/before
	monitor_start || diag "vpci-nl monitor did not start: $(cat /tmp/mon.err)"
	w0=$( [ "$want" = - ] || [ "$want" = unknown ] || sim_stat "$want")
	t0=$SECONDS
	host timeout=$((60 + drain / 1000)) $(sim_cmd "fault-$f" "-n $n --fault $f --drain-ms $drain")
	rc=$?
	diag "$f: fault run exit $rc after $((SECONDS - t0)) s"
	j=$VPCI_RUN/sim-fault-$f.json
	ok=1
	if [ -s "$j" ]; then
		diag_lines "$(jq -r '"\(.fault.name): \(.fault.outcome), sent after \(.fault.sent_after), "
			+ "received after \(.fault.received_after), bad_used \(.fault.bad_used), "
			+ "canaries \(.canaries.ok) (\(.canaries.pages_checked) pages, "
			+ "damaged \(.canaries.damaged)), longest pause \(.longest_idle_ms) ms"' "$j")"
		jq -e '.canaries.ok and .rx.corrupt == 0 and .fault.outcome != "not-injected"' \
			"$j" >/dev/null && [ $rc -eq 0 ] && ok=0
		if [ -n "${lossless[$f]}" ]; then
			jq -e '.fault.outcome == "recovered" and .rx.lost == 0 and
				.fault.misses_left_unanswered > 0' "$j" >/dev/null || ok=1
			diag "$f: lost $(jq .rx.lost "$j"), misses left unanswered" \
				"$(jq .fault.misses_left_unanswered "$j")"
		fi
	else
		diag "no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3)"
	fi
	fault_counters > /tmp/after
	moved=$(join /tmp/before /tmp/after | awk '$3 != $2 { print $1 }' | xargs)
	diag "$f: fault counters moved: ${moved:-none}"
	case $want in
	unknown) diag "no expectation for $f"; ok=1 ;;
	-) [ -z "$moved" ] || ok=1 ;;
	*fault_*) [ "$moved" = "$want" ] || ok=1 ;;
	*) w1=$(sim_stat "$want"); diag "$want: $w0 -> $w1"
	   [ "$w1" -gt "$w0" ] && [ -z "$moved" ] || ok=1 ;;
	esac
	log_test $ok "$policy, fault $f: $want moved (only it), canaries intact${lossless[$f]:+, no frame lost}"
	monitor_check "$want"
	log_test $? "$policy, fault $f: vpci-nl monitor got the matching fault event(s) only"

	d0=$(sim_drops)
	t0=$SECONDS
	host timeout=60 $(sim_cmd "after-$f" "-n $n --drain-ms 3000")
	rc=$?
	diag "$f: clean run exit $rc after $((SECONDS - t0)) s"
	j=$VPCI_RUN/sim-after-$f.json
	[ -s "$j" ] && sim_show "$j"
	ok=1
	[ $rc -eq 0 ] && jq -e --argjson n "$n" '.ok and .rx.unique == $n and .rx.lost == 0' "$j" >/dev/null &&
		[ "$(sim_drops)" = "$d0" ] && ok=0
	[ $ok -eq 0 ] || { sim_explain "$j" "$d0"; [ -s "$j" ] ||
		diag "no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"; }
	log_test $ok "$policy, after $f: reconnect, $n frames each way lossless, nothing dropped in VM2"
done

ethtool -S "$ifname" | grep -E 'fault|stalls|misses' | grep -v ': 0$' | sed 's/^/# /'
dmesg | grep -iE 'fault|stopped|queue [01]' | tail -n 20 | sed 's/^/# /'
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
