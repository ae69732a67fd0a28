#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2-dev
#
# A hostile VM2: root unbinds the driver, mmaps the function's resource2 and
# scans all of VM1's RAM in it for a marker VM1 keeps in memory (a tmpfs
# file, never mapped for the device).
#
# With the vhost-pci QEMU device (1af4:10f0, topology vm1vm2-dev) BAR2 shows
# only what VM1's IOMMU maps: the marker is not found, and every readable
# page is inside the backend's current windows.  With the ivshmem-doorbell
# emulation (1af4:1110, topology vm1vm2) BAR2 maps all of VM1's RAM and the
# marker is found: the test then passes only if it is, documenting that the
# emulation is driver-enforced only.
source "$(dirname "$0")/../lib.sh"

tap_begin 8

vm1() { host vm vm1 "$@"; }
ctl_status() { host vpci-ctl --control-socket "$VPCI_CTL" status; }

vpci_up && wait_until 120 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null &&
	ping -c 20 -i 0.05 -W 2 "$VPCI_VM1_IP" >/dev/null
log_test $? "driver up, traffic flowed (windows exist)"

# (VM1 serves commands once its link is up: after the pings.)
marker="VPCI-HOSTILE-MARKER-$RANDOM$RANDOM-$$"
# Many copies in VM1's page cache (tmpfs): RAM the device never maps.
vm1 "i=0; while [ \$i -lt 256 ]; do printf '%s-%04d ' '$marker' \$i; i=\$((i+1)); done > /tmp/hostile-marker && sync && wc -c < /tmp/hostile-marker"
log_test $? "VM1 keeps a marker in memory ($HOST_OUT bytes)"

pci=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
devid=$(cat "/sys/bus/pci/devices/$pci/device")
diag "function $pci, device id $devid"

# Unmapped and unbound: a root process can do anything with the BAR now.
ip link set dev "$(vpci_netdev)" down 2>/dev/null
echo "$pci" >"$VPCI_DRV/unbind"
[ ! -e "/sys/bus/pci/devices/$pci/driver" ]
log_test $? "root unbinds the driver"

ctl_status
mapped=$(echo "$HOST_OUT" | jq -r '.device.mapped_bytes // empty')
windows=$(echo "$HOST_OUT" | jq -r '.device.windows // empty')
peer=$(echo "$HOST_OUT" | jq -r '.peer_mem_size')
diag "backend: VM1 RAM $peer bytes, device windows ${windows:-n/a} (${mapped:-n/a} bytes)"

# Scan: one 8-byte read per page tells an unmapped page (all-ones, it is
# not the file) from a mapped one; mapped pages are searched for the marker.
scan=$(python3 - "/sys/bus/pci/devices/$pci/resource2" "$peer" "$marker" <<'EOF'
import mmap, os, sys, struct
path, peer, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
size = os.path.getsize(path)
fd = os.open(path, os.O_RDONLY | os.O_SYNC)
mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
readable = 0
found = 0
start = None
for off in range(0, peer, 4096):
    (w,) = struct.unpack_from("<Q", mm, off)
    if w != 0xffffffffffffffff:
        readable += 1
        if mm.find(marker, off, off + 4096 + len(marker)) >= 0:
            found += 1
print(readable * 4096, found)
EOF
)
rc=$?
read -r exposed found <<<"$scan"
diag "BAR2: ${exposed:-?} bytes of VM1's RAM readable, marker on ${found:-?} pages"
[ $rc -eq 0 ] && [ -n "$found" ]
log_test $? "root mmaps resource2 and scans all of VM1's RAM"

case $devid in
0x10f0)
	[ "$found" = 0 ]
	log_test $? "vhost-pci device: VM1's marker is not readable through BAR2"
	[ -n "$mapped" ] && [ "$exposed" -le "$mapped" ]
	log_test $? "vhost-pci device: readable bytes ($exposed) within the windows ($mapped)"
	[ "$exposed" -lt $((peer / 16)) ]
	log_test $? "vhost-pci device: under 1/16 of VM1's RAM readable"
	;;
*)
	[ "${found:-0}" -gt 0 ]
	log_test $? "ivshmem emulation: the marker IS readable (driver-enforced only)"
	log_test 4 "vhost-pci device checks (not this device)"
	log_test 4 "vhost-pci device checks (not this device)"
	;;
esac

dmesg_clean
log_test $? "no BUG/WARNING/Oops in dmesg"

tap_end
