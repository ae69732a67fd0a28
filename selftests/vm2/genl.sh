#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# The vhost_pci generic netlink family tested in C (genl_test.c, on the
# kernel's kselftest_harness.h): this script only loads the driver, brings
# the interface up and hands the test its name and debugfs directory.  The
# TAP stream and the exit status are the harness's own.
source "$(dirname "$0")/../lib.sh"

bin=$VPCI_BUILD/userspace/vpci-genl-test
[ -x "$bin" ] || { echo "1..0 # SKIP $bin is not built"; exit "$KSFT_SKIP"; }
dev=
for d in $(ivshmem_devices); do
	ivshmem_has_msix "$d" && dev=$d
done
[ -n "$dev" ] || { echo "1..0 # SKIP no ivshmem-doorbell function with MSI-X"; exit "$KSFT_SKIP"; }
insmod "$VPCI_KO" || { echo "1..0 # insmod failed"; exit "$KSFT_FAIL"; }
ifname=$(netdev_of "$dev")
ip link set dev "$ifname" up
echo "# $dev: $ifname"
VPCI_IFNAME=$ifname VPCI_DEBUGFS=/sys/kernel/debug/vhost_pci_net/$dev "$bin"
rc=$?
rmmod vhost_pci_net
dmesg_clean || { echo "# BUG/WARNING/Oops in dmesg"; rc=$KSFT_FAIL; }
exit $rc
