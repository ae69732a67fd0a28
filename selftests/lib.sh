#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the guest-side selftests (sourced), in the style of
# tools/testing/selftests/net/lib.sh.  Output is TAP 13; exit status follows
# kselftest: 0 pass, 1 fail, 4 skip.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

VPCI_KO=${VPCI_KO:-$VPCI_BUILD/kernel/$VPCI_KVER/vhost_pci_net.ko}
VPCI_DRV=/sys/bus/pci/drivers/vhost_pci_net

__ntests=0
__nfail=0
__nskip=0
# "N description" of each failed test, repeated at the end with the last
# diagnostics printed before it: a log read from its tail (a CI summary)
# still says what failed and what the test saw.
__failed=()
# diag lines since the last test result (the last __diag_keep of them).
__recent=()
__diag_keep=6

__nplan=0

tap_begin()
{
	__nplan=$1
	echo "TAP version 13"
	echo "1..$1"
}

# log_test <rc> <description>: rc 0 pass, 4 skip, anything else fail.
log_test()
{
	local rc=$1
	shift
	__ntests=$((__ntests + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $__ntests $*"
	elif [ "$rc" -eq "$KSFT_SKIP" ]; then
		__nskip=$((__nskip + 1))
		echo "ok $__ntests $* # SKIP"
	else
		__nfail=$((__nfail + 1))
		__failed+=("$__ntests $*")
		local d
		for d in "${__recent[@]}"; do
			__failed+=("  ${d:0:300}")
		done
		echo "not ok $__ntests $*"
	fi
	__recent=()
}

# Print a diagnostic line (kept for the summary of a test that then fails).
diag()
{
	echo "# $*"
	__recent+=("$*")
	[ ${#__recent[@]} -le $__diag_keep ] || __recent=("${__recent[@]:1}")
}

# diag_lines TEXT: diag each line of TEXT (an argument, not a pipe: diag
# must run in this shell to keep the lines for the summary).
diag_lines()
{
	local l

	while IFS= read -r l; do
		[ -z "$l" ] || diag "$l"
	done <<<"$1"
}

# check <description> <command...>: run the command, log the result.
check()
{
	local desc=$1
	shift
	"$@"
	log_test $? "$desc"
}

# check_fail <description> <command...>: the command must fail.
check_fail()
{
	local desc=$1
	shift
	if "$@"; then
		log_test 1 "$desc"
	else
		log_test 0 "$desc"
	fi
}

tap_end()
{
	local t

	for t in "${__failed[@]}"; do
		case $t in
		"  "*) echo "#   ${t:2}" ;;
		*) echo "# failed: $t" ;;
		esac
	done
	diag "$((__ntests - __nfail - __nskip)) passed, $__nfail failed, $__nskip skipped"
	if [ "$__ntests" -ne "$__nplan" ]; then
		diag "planned $__nplan tests, ran $__ntests"
		exit $KSFT_FAIL
	fi
	if [ $__nfail -ne 0 ]; then
		exit $KSFT_FAIL
	fi
	if [ $__nskip -ne 0 ] && [ $__nskip -eq $__ntests ]; then
		exit $KSFT_SKIP
	fi
	exit $KSFT_PASS
}

# host [timeout=N] <prog args...>: run an allow-listed program (vpci-ctl,
# vpci-sim) on the host through the runner; it may run N seconds (default
# 30, at most 600).  {run} in the arguments is the run directory.
# host [timeout=N] bg <name> <prog args...>: start it in the background;
# host running <name>: 0 while that job runs, 1 once it ended;
# host wait <name>: wait for that job, its exit status and output (tail).
# host vm <guest> <shell command>: run it inside another guest of the run.
# Sets HOST_OUT to its output; returns its exit status.
host()
{
	local tag rc b64
	if [ "$1" = vm ]; then
		# The command may hold quotes and newlines: send it encoded.
		echo "@host vm $2 b64:$(printf '%s' "$3" | base64 -w0)" >&3
	else
		echo "@host $*" >&3
	fi
	# A tagged reply ("@reply #TAG ...") is for a request of a remote
	# class (selftests/vm/remote_vpci.py) that did not wait for it: not ours.
	while read -r tag rc b64 <&3; do
		[ "${rc#\#}" = "$rc" ] && break
	done || return 125
	[ "$tag" = "@reply" ] || return 125
	HOST_OUT=$(echo "$b64" | base64 -d)
	return "$rc"
}

# wait_until <seconds> <command...>: poll until the command succeeds or
# the time is up (wall clock: each try may itself take a while).
wait_until()
{
	local end=$((SECONDS + $1))
	shift
	while :; do
		"$@" && return 0
		[ $SECONDS -ge $end ] && return 1
		sleep 0.1
	done
}

# ping_clean OUT N: ping's summary says N sent, N received, and nothing
# else: no "+K duplicates" (a duplicate would still read "0% packet
# loss"), no "+K errors", no usage error instead of a summary.
ping_clean()
{
	echo "$1" | grep -qE "^$2 packets transmitted, $2 received, 0% packet loss" &&
		! echo "$1" | grep -qE 'duplicates|errors'
}

# isnum V...: every V is a non-negative number (a value parsed from a status
# that came back empty must fail a check, not compare as 0).
isnum()
{
	local v
	[ $# -gt 0 ] || return 1
	for v in "$@"; do
		[[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || return 1
	done
}

# faults_zero IFNAME: the per-queue fault counters are there (6 per queue,
# at least one pair) and all 0; an ethtool -S that printed nothing fails.
faults_zero()
{
	local st
	st=$(ethtool -S "$1" | awk '$1 ~ /_fault_/')
	[ "$(echo "$st" | grep -c .)" -ge 12 ] && ! echo "$st" | awk '$2 != 0 { bad = 1 } END { exit !bad }'
}

# Kernel log lines that mean the test must fail whatever it printed.
dmesg_clean()
{
	! dmesg | grep -E 'BUG:|WARNING:|Oops|Call Trace:|general protection'
}

# ivshmem functions (1af4:1110), one PCI address a line.
ivshmem_devices()
{
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] &&
			basename "$d"
	done
}

# The doorbell variant has an MSI-X BAR1; ivshmem-plain has none.
ivshmem_has_msix()
{
	[ -n "$(sed -n 2p "/sys/bus/pci/devices/$1/resource" | awk '$1 != "0x0000000000000000"')" ]
}

bound_driver()
{
	local l=/sys/bus/pci/devices/$1/driver
	[ -L "$l" ] && basename "$(readlink "$l")"
}

netdev_of()
{
	ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1
}

# vpci_up: insmod the driver, bring its interface up with VPCI_VM2_ADDR.
# Sets dev (PCI address) and ifname.  False (with a diag) on any failure.
vpci_up()
{
	insmod "$VPCI_KO" || { diag "insmod $VPCI_KO failed"; return 1; }
	dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
	ifname=$(netdev_of "$dev")
	[ -n "$ifname" ] || { diag "no interface on $dev"; return 1; }
	ip addr add "$VPCI_VM2_ADDR" dev "$ifname" && ip link set dev "$ifname" up
}

# True once the driver started both of VM1's virtqueues (dmesg).
vpci_queues_started()
{
	[ "$(dmesg | grep -c 'queue [01]: started')" -ge 2 ]
}

# The vhost_pci_net interface (after insmod), and the first virtio-net one;
# false while there is none.
vpci_netdev()
{
	local n
	n=$(netdev_of "$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")")
	[ -n "$n" ] && echo "$n"
}

virtio_netdev()
{
	local n
	n=$(ls /sys/bus/virtio/drivers/virtio_net/*/net 2>/dev/null | head -n1)
	[ -n "$n" ] && echo "$n"
}
