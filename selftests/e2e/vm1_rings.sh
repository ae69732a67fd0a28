#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# VM1's virtio-net (behind intel-iommu) negotiates with the backend and
# reaches DRIVER_OK; the control area carries both rings' IOVAs; VM2's driver
# misses on the ring pages, the backend turns the misses into backend-channel
# IOTLB misses, VM1's QEMU answers with updates, and the driver maps the rings.
source "$(dirname "$0")/../lib.sh"

tap_begin 8

check "insmod vhost_pci_net" insmod "$VPCI_KO"

status() { host vpci-ctl --control-socket "$VPCI_CTL" status; }
jget() { echo "$HOST_OUT" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

rings_ok='all(q["enabled"] and q["num"] > 0 and q["desc"] and q["avail"] and q["used"] for q in d["frontend"]["queues"][:2])'
running() { status && [ "$(jget "d['frontend']['connected'] and $rings_ok")" = True ]; }
wait_until 120 running
log_test $? "VM1 connected, negotiated, described and enabled both rings"
diag "frontend: $(jget 'd["frontend"]' | cut -c1-400)"

status && [ "$(jget '(d["frontend"]["features"] >> 33) & 1')" = 1 ]
log_test $? "ACCESS_PLATFORM negotiated (ring addresses are IOVAs)"

host vpci-ctl header --mem-file "$VPCI_MEM" --json >/dev/null &&
	status && [ "$(jget 'd["frontend"]["mem_regions"] >= 1 and (d["backend_status"] & 0x6) == 0x6' 2>/dev/null)" = True ]
log_test $? "control area: backend status RUNNING and IOMMU, memory table known"

mapped() { [ "$(dmesg | grep -c 'queue [01]: rings mapped')" -ge 2 ]; }
wait_until 60 mapped
log_test $? "driver mapped both rings through IOTLB misses"
dmesg | grep 'rings mapped' | sed 's/^/# /'

status && [ "$(jget 'd["iotlb"]["misses_sent"] > 0 and d["iotlb"]["updates"] > 0')" = True ]
log_test $? "backend forwarded misses and relayed updates"
diag "iotlb: $(jget 'd["iotlb"]')"

# With VM1 idle the backend must not spin: no busy loop on the host.
status && c0=$(jget 'd["cpu_seconds"]')
sleep 5
status && c1=$(jget 'd["cpu_seconds"]')
diag "backend CPU over 5 s with VM1 idle: $(python3 -c "print(round($c1 - $c0, 3))") s"
python3 -c "import sys; sys.exit(0 if $c1 - $c0 < 0.1 else 1)"
log_test $? "backend idle while VM1 is idle (< 0.1 CPU s in 5 s)"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
