#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs as PID 1 on the host root (read-only 9p): sets the guest up, runs the
# test script with its output on ttyS1, reports "@exit <rc>", powers off
# once the runner answered (or after 5 s).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
set -a
. "$1"
set +a
exec </dev/null
mount -t debugfs none /sys/kernel/debug 2>/dev/null
mount -t tracefs none /sys/kernel/tracing 2>/dev/null
hostname "$VPCI_VM"
ip link set lo up

stty -F /dev/ttyS1 raw -echo -icanon 2>/dev/null
export VPCI_TTY=/dev/ttyS1
cd "$VPCI_REPO/selftests" || exit 1

rc=0
if [ -n "$VPCI_SCRIPT" ]; then
	bash "$VPCI_SCRIPT" >/dev/ttyS1 2>&1 3<>/dev/ttyS1
	rc=$?
fi
# The runner answers "@bye" once it noted where the services' logs stand
# (what the power-off below leaves there is checked apart); 5 s at most.
exec 3<>/dev/ttyS1
echo "@exit $rc" >&3
read -r -t 5 _ <&3
sync
busybox poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
