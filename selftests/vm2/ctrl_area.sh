#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# The driver claims an ivshmem function only when BAR2 ends in a valid
# control area: a plain ivshmem device stays unbound, and each corruption of
# the header (made on the host, in the shared file) is refused with one log
# line (info for a missing magic, error otherwise) and no oops; restoring the header makes the device bindable again.
source "$(dirname "$0")/../lib.sh"

cases="magic=0x12345678 abi_version=2 total_size=0x8000 ctrl_offset=0x1000
peer_mem_size=0xfffff000 peer_mem_size=0 max_queue_pairs=0 max_queue_pairs=9
num_vectors=7 msg_ring_size=256"

tap_begin $((4 + $(echo $cases | wc -w) + 3))

doorbell= plain=
for d in $(ivshmem_devices); do
	if ivshmem_has_msix "$d"; then doorbell=$d; else plain=$d; fi
done
[ -n "$doorbell" ] && [ -n "$plain" ]
log_test $? "ivshmem-doorbell ($doorbell) and ivshmem-plain ($plain) present"

check "insmod vhost_pci_net" insmod "$VPCI_KO"

[ -z "$(bound_driver "$plain")" ] &&
	dmesg | grep -q "$plain: no control area (bad magic), not a vhost-pci device"
log_test $? "plain ivshmem without a control area left unbound"

[ "$(bound_driver "$doorbell")" = vhost_pci_net ] &&
	echo "$doorbell" > "$VPCI_DRV/unbind"
log_test $? "valid device bound, then unbound through sysfs"

host vpci-ctl header --mem-file "$VPCI_MEM" --json
good=$HOST_OUT
for c in $cases; do
	field=${c%%=*}
	orig=$(echo "$good" | sed -n "s/.*\"$field\": *\([0-9]*\).*/\1/p")
	# A wrong magic is indistinguishable from another ivshmem user.
	expect="$doorbell: rejecting control area"
	[ "$field" = magic ] && expect="$doorbell: no control area (bad magic), not a vhost-pci device"
	dmesg -C
	host vpci-ctl header --mem-file "$VPCI_MEM" --set "$c" >/dev/null &&
		! echo "$doorbell" > "$VPCI_DRV/bind" 2>/dev/null &&
		[ -z "$(bound_driver "$doorbell")" ] &&
		[ "$(dmesg | grep -c "$expect")" = 1 ] &&
		dmesg_clean >/dev/null
	rc=$?
	[ $rc -ne 0 ] && diag "dmesg: $(dmesg | tail -n 3 | tr '\n' '|')"
	host vpci-ctl header --mem-file "$VPCI_MEM" --set "$field=$orig" >/dev/null || rc=1
	log_test $rc "corrupt $c: rejected with one log line, no oops"
done

echo "$doorbell" > "$VPCI_DRV/bind" && [ "$(bound_driver "$doorbell")" = vhost_pci_net ]
log_test $? "restored header: device binds again"

check "rmmod vhost_pci_net" rmmod vhost_pci_net
check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
