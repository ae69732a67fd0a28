#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# N queue pairs (run with queues=N:vectors=2N+1:vm1_mq=on, N >= 2): the
# backend wires N, the driver offers VIRTIO_NET_F_MQ, VM1's virtio-net asks
# its QEMU for 2 of them, then all N (ethtool -L; QEMU answers the control
# virtqueue and enables the rings) and VM2's interface follows each time
# with as many TX and RX queues.  TCP flows both ways then use every pair,
# counted per queue; when VM1 goes back to one pair, VM2 follows and
# traffic goes on; when VM1 enables them all again, every pair resumes
# where it stopped (no ring fault) and carries traffic again.  The queue
# vectors and the XPS maps are spread as virtio_net spreads its virtqueues
# (run with vm2_smp=2 or 4 to see the CPUs used).
source "$(dirname "$0")/../lib.sh"

tap_begin 13

vm1() { host vm vm1 "$@"; }
stat() { ethtool -S "$ifname" | awk -v k="$1:" '$1 == k { print $2 }'; }
# "max current" of ethtool -l Combined, e.g. "2 2"
pairs() { ethtool -l "$ifname" | awk '/^Combined:/ { print $2 }' | xargs; }
ntx() { ls -d /sys/class/net/"$ifname"/queues/tx-* | wc -l; }
nrx() { ls -d /sys/class/net/"$ifname"/queues/rx-* | wc -l; }
follows() { [ "$(pairs)" = "$n $1" ] && [ "$(ntx)" = "$1" ] && [ "$(nrx)" = "$1" ]; }

vpci_up && wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 reachable"

# The pairs the backend wired: VM2's maximum.
n=$(pairs)
n=${n% *}
isnum "$n" && [ "$n" -ge 2 ] || { diag "ethtool -l: '$(pairs)'"; n=2; }
vm1 "ethtool -l eth0 | awk '/^Combined:/ { print \$2 }' | xargs"
diag "VM1 combined (max current): $HOST_OUT"
[ "$HOST_OUT" = "$n 1" ]
log_test $? "VM1 negotiated MQ with $n pairs, one enabled"

# set_pairs K: VM1 enables K pairs (its current count printed back).
set_pairs() { vm1 "ethtool -L eth0 combined $1 && ethtool -l eth0 | awk '/^Combined:/ { print \$2 }' | tail -n 1"; }
set_pairs 2
[ "$HOST_OUT" = 2 ] && wait_until 30 follows 2 &&
	ping_clean "$(ping -c 5 -i 0.2 -W 2 "$VPCI_VM1_IP" 2>&1)" 5
log_test $? "VM1 enables 2 pairs: VM2 follows (ethtool -l $(pairs), $(ntx) TX queues), 5 pings"

set_pairs "$n"
diag "VM1 after ethtool -L combined $n: current $HOST_OUT"
[ "$HOST_OUT" = "$n" ] && wait_until 30 follows "$n"
rc=$?
diag "VM2: ethtool -l combined (max current) $(pairs), $(ntx) TX and $(nrx) RX queues"
dmesg | grep -E 'queue pair|queue [0-9]+: started' | sed 's/^/# /'
log_test $rc "VM1 enables all $n: VM2 follows with $n TX and $n RX queues, ethtool -l current $n"

# The CPUs of pair P when N pairs run, as a mask: virtio_net's division
# (contiguous blocks of ncpu / N, the first ncpu % N one larger; with more
# pairs than CPUs one each, wrapping: pair p on CPU p mod ncpu).
ncpu=$(nproc)
pair_mask() {
	local p=$1 n=$2 ncpu stride strag first size k m=0
	ncpu=$(nproc)
	stride=$((ncpu / n > 1 ? ncpu / n : 1))
	strag=$((ncpu >= n ? ncpu % n : 0))
	first=$((p * stride + (p < strag ? p : strag)))
	size=$((stride + (p < strag ? 1 : 0)))
	for ((k = 0; k < size; k++)); do
		m=$((m | 1 << ((first + k) % ncpu)))
	done
	echo "$m"
}
# Both vectors of each pair: affinity hint and affinity (/proc/irq) are the
# pair's CPUs, each vector found by its one name.  Quiet unless $1 is set
# (wait_until retries it).
spread() {
	local p d irq hint aff want
	for ((p = 0; p < n; p++)); do
		want=$(pair_mask "$p" "$n")
		for d in rx tx; do
			irq=$(awk -v s="-vq$p-$d" 'substr($NF, length($NF) - length(s) + 1) == s \
				{ sub(":", "", $1); print $1 }' /proc/interrupts)
			[ "$(wc -w <<<"$irq")" = 1 ] || { diag "vq$p-$d: IRQ '$irq'"; return 1; }
			hint=$(tr -d ',\n' < "/proc/irq/$irq/affinity_hint")
			aff=$(tr -d ',\n' < "/proc/irq/$irq/smp_affinity")
			[ -n "$1" ] &&
				diag "vq$p-$d: IRQ $irq, hint $hint, affinity $aff (want $(printf '%x' "$want"))"
			[ $((16#$hint)) = "$want" ] && [ $((16#$aff)) = "$want" ] || return 1
		done
	done
}
# XPS: TX queue p is sent on from the same CPUs.  Quiet unless $1 is set
# (wait_until retries it).
xps() {
	local p want got
	for ((p = 0; p < n; p++)); do
		want=$(pair_mask "$p" "$n")
		got=$(tr -d ',\n' < "/sys/class/net/$ifname/queues/tx-$p/xps_cpus")
		[ -n "$1" ] && diag "tx-$p: xps_cpus $got (want $(printf '%x' "$want"))"
		[ -n "$got" ] && [ $((16#$got)) = "$want" ] || return 1
	done
}
spread show && { wait_until 5 xps || true; xps show; }
log_test $? "queue vectors and XPS maps spread over the $ncpu CPUs as virtio_net does (hint, affinity, xps_cpus)"

# CPU hotplug, as virtio_net follows it: the last CPU goes offline, every
# pair is spread again over the CPUs left (the IRQ core alone would move
# the vectors but leave hints and XPS maps naming the dead CPU); it comes
# back and takes its share again (nothing else would move them back).
cpu=$((ncpu - 1))
online=/sys/devices/system/cpu/cpu$cpu/online
if [ "$ncpu" -ge 2 ] && [ -w "$online" ]; then
	echo 0 > "$online"
	diag "CPU $cpu offline: $(nproc) online"
	# Not vacuous: the CPU must really be gone (else the old spread passes).
	[ "$(cat "$online")" = 0 ] && [ "$(nproc)" = $((ncpu - 1)) ] &&
		{ wait_until 5 spread || true; spread show; } && { wait_until 5 xps || true; xps show; }
	rc=$?
	echo 1 > "$online"
	diag "CPU $cpu online again: $(nproc) online"
	[ $rc = 0 ] && { wait_until 5 spread || true; spread show; } && { wait_until 5 xps || true; xps show; }
	log_test $? "CPU hotplug: a CPU going offline and coming back, the pairs are spread again each time"
else
	log_test "$KSFT_SKIP" "CPU hotplug: needs 2 vCPUs and a CPU that can go offline ($ncpu, $online)"
fi

# 16 flows per extra pair each way: that some pair carries none of them by
# chance is 2^-15 with 2 pairs, about 4 in a million with 4.
flows=$((16 * (n - 1)))
# iperf SECONDS [-R]: $flows TCP flows, VM2 -> VM1 (-R: VM1 -> VM2).
# VM2 -> VM1 from every CPU, one pinned client each, VM1 serving each on
# a port of its own: XPS sends a CPU's frames on that CPU's pair, so one
# client leaves the other pairs to wherever ACKs happen to be processed
# (with 4 vCPUs one pair then carried nothing to VM1, seen).  VM1 -> VM2:
# one client; VM1 spreads the flows by hash.
vm1 "for c in $(seq -s ' ' 0 $((ncpu - 1))); do iperf3 -s -D -B $VPCI_VM1_IP -p \$((5211 + c)); done"
iperf() {
	local secs=$1 c rc=0 pids=() clients=1
	shift
	[ "${1:-}" = -R ] || clients=$ncpu
	for ((c = 0; c < clients; c++)); do
		if [ "$clients" = 1 ]; then
			set -- -p 5201 "$@"
		else
			set -- -p $((5211 + c)) "$@"
		fi
		timeout $((secs + 60)) taskset -c $((c % ncpu)) iperf3 -c "$VPCI_VM1_IP" -t "$secs" \
			-P $(((flows + clients - 1) / clients)) -f m "$@" >"/tmp/iperf-$c.out" 2>&1 &
		pids+=($!)
		shift 2
	done
	for c in "${!pids[@]}"; do
		wait "${pids[$c]}" || rc=1
		grep -E 'SUM.*(sender|receiver)|error' "/tmp/iperf-$c.out" | sed "s/^/# client $c: /"
		grep -q 'SUM.*receiver' "/tmp/iperf-$c.out" && ! grep -q error "/tmp/iperf-$c.out" || rc=1
	done
	return $rc
}
# all_pairs_moved: every pair's TX and RX packets grew since the last call.
declare -A last
all_pairs_moved() {
	local p t r
	to= from= idle=
	for ((p = 0; p < n; p++)); do
		t=$(stat "vq${p}_tx_packets")
		r=$(stat "vq${p}_rx_packets")
		to+=" $t" from+=" $r"
		isnum "$t" "$r" && [ "$t" -gt "${last[t$p]:-0}" ] && [ "$r" -gt "${last[r$p]:-0}" ] ||
			idle+=" $p"
		last[t$p]=$t last[r$p]=$r
	done
	diag "to VM1 per pair:$to; from VM1:$from; VM2 tx_dropped $(cat /sys/class/net/"$ifname"/statistics/tx_dropped)"
	[ -z "$idle" ]
}
iperf 3 && iperf 3 -R
rc=$?
all_pairs_moved && [ $rc = 0 ]
log_test $? "iperf3 TCP, $flows flows each way: all $n pairs carry frames both ways${idle:+ (idle:$idle)}"

# One queue broken, the others go on: debugfs breaks pair 1's TX queue
# (VM1's RX ring) exactly as a ring fault would; 32 UDP flows sent from
# both CPUs then leave on pairs 0, 2 and 3 while pair 1 moves nothing and
# its frames are dropped (tx_dropped).  VM1 disabling and enabling the
# pairs below restarts it (the last test: every pair carries frames).
dbg=/sys/kernel/debug/vhost_pci_net/$(ethtool -i "$ifname" | awk '/^bus-info:/ { print $2 }')
traffic=$VPCI_BUILD/userspace/vpci-traffic
declare -A before
for ((p = 0; p < n; p++)); do
	before[$p]=$(stat "vq${p}_tx_packets")
done
drops=$(cat "/sys/class/net/$ifname/statistics/tx_dropped")
# "break" takes no address: a write with one is refused, nothing breaks.
if echo "2 break 0x1000" > "$dbg/inject_fault" 2>/dev/null; then
	rc=1
	diag "\"2 break 0x1000\" accepted"
else
	echo "2 break" > "$dbg/inject_fault"
	rc=$?
fi
pids=()
for ((k = 0; k < 32; k++)); do
	timeout 60 taskset -c $((k % ncpu)) "$traffic" send --to "$VPCI_VM1_IP:$((5700 + k))" \
		-n 100 --size 64 >/dev/null 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
moved= stuck=
for ((p = 0; p < n; p++)); do
	t=$(stat "vq${p}_tx_packets")
	moved+=" $((t - ${before[$p]:-0}))"
	if [ "$p" = 1 ]; then
		isnum "$t" && [ "$t" = "${before[$p]}" ] || stuck+=" pair 1 moved"
	else
		isnum "$t" && [ "$t" -gt "${before[$p]:-0}" ] || stuck+=" $p"
	fi
done
drops=$(($(cat "/sys/class/net/$ifname/statistics/tx_dropped") - drops))
diag "after breaking queue 2: frames per pair$moved; tx_dropped +$drops; vq1_tx_fault_ring $(stat vq1_tx_fault_ring)"
[ $rc = 0 ] && [ -z "$stuck" ] && [ "$drops" -gt 0 ] && [ "$(stat vq1_tx_fault_ring)" = 1 ]
log_test $? "pair 1's TX queue broken as by a ring fault: the other pairs carry 32 flows${stuck:+ (not:$stuck)}, its frames dropped"

# Pairs VM1 no longer runs keep no affinity hint (an old one may name a
# CPU that has gone since).  Quiet unless $1 is set.
no_hints() {
	local p d irq hint
	for ((p = 1; p < n; p++)); do
		for d in rx tx; do
			irq=$(awk -v s="-vq$p-$d" 'substr($NF, length($NF) - length(s) + 1) == s \
				{ sub(":", "", $1); print $1 }' /proc/interrupts)
			[ "$(wc -w <<<"$irq")" = 1 ] || return 1
			hint=$(tr -d ',\n' < "/proc/irq/$irq/affinity_hint")
			[ -n "$1" ] && diag "vq$p-$d: IRQ $irq, hint $hint"
			[ -n "$hint" ] && [ $((16#$hint)) = 0 ] || return 1
		done
	done
}
vm1 "ethtool -L eth0 combined 1"
wait_until 30 follows 1 && { wait_until 5 no_hints || true; no_hints show; }
rc=$?
diag "VM2 after VM1 went back to one pair: ethtool -l $(pairs), $(ntx) TX queues"
log_test $rc "VM1 back to one pair: VM2 follows (1 TX queue), the other pairs' vectors keep no hint"

out=$(ping -c 20 -i 0.2 -W 2 "$VPCI_VM1_IP" 2>&1)
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 20
log_test $? "ping after the change: 20 of 20, no duplicates"

# No SET_VRING_BASE comes before VM1 enables the pairs again: each must
# resume where VM2 stopped it, not at its old base (a ring fault then).
set_pairs "$n"
[ "$HOST_OUT" = "$n" ] && wait_until 30 follows "$n" && { wait_until 5 xps || true; xps show; }
rc=$?
# Counts from here: the flows of the break test moved pairs 0, 2 and 3.
all_pairs_moved >/dev/null
diag "VM2 after VM1 enabled $n again: ethtool -l $(pairs), $(ntx) TX queues"
dmesg | grep -E 'ring fault|queue [0-9]+: (stopped|started)' | tail -n 12 | sed 's/^/# /'
log_test $rc "VM1 enables all $n again: VM2 follows, XPS maps set again"
iperf 2 && iperf 2 -R
rc=$?
all_pairs_moved && [ $rc = 0 ]
log_test $? "again: all $n pairs carry frames both ways${idle:+ (idle:$idle)}"

# The one fault counted is the ring fault injected above.
faults_injected_only() {
	local st
	st=$(ethtool -S "$ifname" | awk '$1 ~ /_fault_/')
	[ "$(grep -c . <<<"$st")" -ge 12 ] &&
		[ "$(awk '$2 != 0 { print $1 $2 }' <<<"$st")" = "vq1_tx_fault_ring:1" ]
}
check "no BUG/WARNING/Oops in dmesg, no fault counted but the one injected" \
	eval "dmesg_clean && faults_injected_only"

tap_end
