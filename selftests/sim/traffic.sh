#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
#
# VM2's driver against the peer simulator (VM1 in userspace on the host):
# frames of mixed sizes (60..1514) go VM1 TX -> VM2 NAPI -> tc mirred ->
# VM2 xmit -> VM1 RX, and vpci-sim checks every one comes back exactly
# once, in order, uncorrupted, with its canaries intact.  In interrupt,
# poll and hybrid mode, and across mode switches during one run.  The IOMMU
# policy is the topology variable "policy" (identity: everything mapped;
# transient: every buffer mapped before it is posted and unmapped after
# use, no mapping pushed, so each one costs the driver a miss; the driver
# stalls on a miss, never drops).  The topology variable "modes" picks the
# runs (default interrupt,poll,hybrid,switch), "frames" the frames each way
# per run (default 100000).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

policy=${VPCI_SIM_POLICY:-identity}
# Paced rates TCG sustains on a 2-core host (docs/simulator.md): identity
# about half the unpaced ceiling; transient below what each mode reached
# unpaced (poll mode is slowest there: NAPI polling and the config work
# that applies IOTLB updates share VM2's one vCPU).
rate_for()
{
	[ -n "$VPCI_TEST_SIM_RATE" ] && { echo "$VPCI_TEST_SIM_RATE"; return; }
	case $policy:$1 in
	transient:poll|transient:switch) echo 800 ;;
	transient:hybrid) echo 1200 ;;
	transient:*) echo 1500 ;;
	*:switch*) echo 8000 ;;	# long enough for three switches under TCG
	*) echo 15000 ;;
	esac
}
frames=${VPCI_TEST_SIM_FRAMES:-${VPCI_SIM_FRAMES:-100000}}
limit=170
modes=${VPCI_SIM_MODES:-interrupt,poll,hybrid,switch}
modes=${modes//,/ }
nmodes=$(echo $modes | wc -w)

tap_begin $((4 + nmodes))

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
drops0=$(sim_drops)
diag "VM2 vCPUs: $(nproc)"

# run_sim NAME [bg]: one run, JSON in the run directory.
sim_cmd()
{
	echo "vpci-sim $(sim_args) --iommu-policy $policy --mode interrupt" \
		"--direction both -n $frames --size 60-1514 --rate $(rate_for "$1")" \
		"--drain-ms 3000 --connect-wait-ms 5000 --json $VPCI_RUN/sim-$1.json"
}

# check_run NAME RC: every frame back exactly once, nothing else wrong.
check_run()
{
	local f=$VPCI_RUN/sim-$1.json
	[ -s "$f" ] || { diag "no summary from vpci-sim (rc $2): $HOST_OUT"; return 1; }
	sim_show "$f"
	[ "$2" -eq 0 ] || { diag_lines "$(echo "$HOST_OUT" | tail -n 5)"; return 1; }
	jq -e --argjson n "$frames" '.ok and .tx.sent == $n and .tx.completed == $n and
		.rx.unique == $n and .rx.lost == 0 and .rx.duplicates == 0 and
		.rx.reordered == 0 and .rx.corrupt == 0 and .rx.out_of_range == 0 and
		.rx.bad_used == 0 and .tx.bad_used == 0 and .canaries.ok' "$f" >/dev/null &&
		[ "$(sim_drops)" = "$drops0" ] && return 0
	sim_explain "$f" "$drops0"
	return 1
}

run_interrupt()
{
	ethtool --set-priv-flags "$ifname" poll-mode off && ethtool -C "$ifname" rx-usecs 0
	host timeout=$limit $(sim_cmd interrupt)
	check_run interrupt $?
	log_test $? "$policy, interrupt mode: $frames frames each way at $(rate_for interrupt)/s, lossless, in order"
}

run_poll()
{
	ethtool -C "$ifname" rx-usecs 0 && ethtool --set-priv-flags "$ifname" poll-mode on
	host timeout=$limit $(sim_cmd poll)
	check_run poll $?
	log_test $? "$policy, poll mode: $frames frames each way at $(rate_for poll)/s, lossless, in order"
}

run_hybrid()
{
	ethtool --set-priv-flags "$ifname" poll-mode off && ethtool -C "$ifname" rx-usecs 200
	host timeout=$limit $(sim_cmd hybrid)
	check_run hybrid $?
	log_test $? "$policy, hybrid mode (rx-usecs 200): $frames frames each way at $(rate_for hybrid)/s, lossless, in order"
}

# Switch modes while one run is under way (a background host job).
run_switch()
{
	local rc secs step rate

	ethtool --set-priv-flags "$ifname" poll-mode off && ethtool -C "$ifname" rx-usecs 0
	job=$((job + 1))
	t0=$(date +%s.%N)
	host timeout=$limit bg "switch$job" $(sim_cmd "switch$job")
	rc=$?
	if [ $rc -eq 0 ]; then
		rate=$(rate_for switch)
		secs=$(( rate > 0 ? frames / rate : 4 ))
		# A tenth of the run between switches: each ethtool call takes
		# most of a second under TCG, and all three must land while
		# frames still flow (checked below).
		step=$(awk -v s="$secs" 'BEGIN { printf "%.1f", s > 5 ? s / 10 : 0.5 }')
		sleep "$step"
		ethtool --set-priv-flags "$ifname" poll-mode on
		sleep "$step"
		ethtool --set-priv-flags "$ifname" poll-mode off
		ethtool -C "$ifname" rx-usecs 200
		sleep "$step"
		ethtool -C "$ifname" rx-usecs 0
		t1=$(date +%s.%N)
		host wait "switch$job"
		rc=$?
	fi
	check_run "switch$job" $rc
	rc=$?
	# The last switch must have happened while frames were still flowing,
	# or the run proved nothing about switching (it ended too early).
	local f=$VPCI_RUN/sim-switch$job.json
	if [ $rc -eq 0 ]; then
		local after
		after=$(awk -v a="${t1:-0}" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
		jq -e --argjson after "$after" '.seconds > $after' "$f" >/dev/null
		rc=$?
		diag "last switch at $after s, run took $(jq '.seconds*100|round/100' "$f") s"
	fi
	log_test $rc "$policy, interrupt -> poll -> hybrid -> interrupt during one run: lossless, in order, switched before it ended"
}

job=0
for m in $modes; do
	"run_$m"
done

faults=$(ethtool -S "$ifname" | awk '/fault/ && $2 != 0')
[ -z "$faults" ]
log_test $? "no datapath fault counted"
[ -z "$faults" ] || echo "$faults" | sed 's/^/# /'
ethtool -S "$ifname" | grep -E 'stalls|misses|packets' | sed 's/^/# /'
[ -z "$faults" ] || dmesg | grep -E 'queue [0-9]|fault|mode$' | tail -n 30 | sed 's/^/# /'

[ "$(sim_stat vq0_rx_packets)" -ge $((nmodes * frames)) ] &&
	[ "$(sim_stat vq0_tx_packets)" -ge $((nmodes * frames)) ]
log_test $? "driver counted every frame both ways"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
