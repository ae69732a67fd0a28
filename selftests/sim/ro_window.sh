#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
#
# A read-only mapping of VM1 stays read-only for a hostile VM2 (issue 13).
#
# The simulator, as VM1, maps pages read-only for the device: its TX
# buffers and --extra-mappings pages (all onto one page of VM1's RAM it
# fills with canary bytes and checks when the run ends), and pushes every
# mapping (--iotlb-push) so the backend opens the windows at once.  Then
# VM2's root unbinds the driver, mmaps resource2 read/write, reads each
# read-only window and writes over it:
#
#  - vhost-pci device (1af4:10f0, topology vm2sim-dev): the windows show
#    VM1's bytes, the writes are discarded (reading back gives VM1's bytes),
#    and VM1 finds its page unchanged (the simulator's canaries);
#  - ivshmem-doorbell emulation (1af4:1110): the writes land and VM1's page
#    is damaged; the test then passes only if they do, documenting that the
#    emulation is driver-enforced only.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

extra=16
j=$VPCI_RUN/sim-ro.json

tap_begin 7

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
pci=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
devid=$(cat "/sys/bus/pci/devices/$pci/device")
# To see the device's checks fail on the emulation: VPCI_TEST_RO_AS=0x10f0.
devid=${VPCI_TEST_RO_AS:-$devid}
diag "function $pci, device id $devid"

# 20 s of traffic at most; it stops when the driver is unbound, and the
# run ends 15 s after the last frame moved (then the canaries are checked).
# It writes its summary only then: no summary yet after VM2's writes means
# they happened while VM1's windows were still mapped.
host timeout=120 bg ro vpci-sim $(sim_args) --iommu-policy static-pool \
	--iotlb-push --extra-mappings $extra --mode interrupt --direction both \
	-n 4000 --size 60-1514 --rate 200 --drain-ms 15000 --connect-wait-ms 5000 \
	--json "$j"
started=$?

# ro_ranges: "bar_offset size" of each read-only range in the driver's
# IOTLB (VM1's read-only mappings, as BAR offsets; the extra pages all map
# one page, listed once).
ro_ranges()
{
	ro=$("$VPCI_BUILD/userspace/vpci-nl" --json iotlb "$ifname" |
		jq -r '.entries[] | select(.perm == "read") | "\(.bar_offset) \(.start) \(.last)"' |
		while read -r off s l; do echo "$((off)) $((l - s + 1))"; done | sort -n | uniq)
	[ -n "$ro" ]
}
# device_ro_windows: the vhost-pci device's read-only windows (backend status).
device_ro_windows()
{
	host vpci-ctl --control-socket "$VPCI_CTL" status || return 1
	echo "$HOST_OUT" | jq -e '[.device.window_list[]? | select(.perm == 1)] | length > 0' \
		>/dev/null
}
rx0=$(sim_stat vq0_rx_packets)
rx_moved() { [ "$(sim_stat vq0_rx_packets)" -gt "$rx0" ]; }
[ $started -eq 0 ] && wait_until 30 rx_moved && wait_until 10 ro_ranges
log_test $? "VM1's frames flow; the driver's IOTLB has read-only ranges ($(echo "$ro" | grep -c .))"
diag "read-only ranges (BAR offset, bytes): $(echo $ro | xargs)"

ip link set dev "$ifname" down
echo "$pci" >"$VPCI_DRV/unbind"
[ ! -e "/sys/bus/pci/devices/$pci/driver" ] &&
	{ [ "$devid" != 0x10f0 ] || device_ro_windows; }
log_test $? "root unbinds the driver (the device keeps its read-only windows: they follow VM1's IOMMU)"

# For every page of every read-only window: read its first 64 bytes, write
# a pattern over them (only those 64), read again.  Prints "pages visible kept landed".
scan=$(python3 - "/sys/bus/pci/devices/$pci/resource2" $ro <<'EOF'
import mmap, os, sys
path, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
fd = os.open(path, os.O_RDWR | os.O_SYNC)
mm = mmap.mmap(fd, os.path.getsize(path), mmap.MAP_SHARED,
               mmap.PROT_READ | mmap.PROT_WRITE)
pattern = b"VM2-WAS-HERE-" * 4 + b"!" * 12
pages = visible = kept = landed = 0
for off, size in zip(args[0::2], args[1::2]):
    for page in range(off, off + size, 4096):
        pages += 1
        before = mm[page:page + 64]
        if before != b"\xff" * 64:
            visible += 1
        mm[page:page + 64] = pattern
        after = mm[page:page + 64]
        if after == before:
            kept += 1
        elif after == pattern:
            landed += 1
print(pages, visible, kept, landed)
EOF
)
rc=$?
read -r pages visible kept landed <<<"$scan"
diag "read-only windows: ${pages:-?} pages, ${visible:-?} showing VM1's bytes," \
	"${kept:-?} unchanged after VM2's write, ${landed:-?} overwritten"
early=$([ -s "$j" ] && echo "the simulator had already ended")
[ -z "$early" ] || diag "$early"
[ $rc -eq 0 ] && isnum "$pages" "$visible" "$kept" "$landed" && [ "$pages" -gt 0 ] &&
	[ -z "$early" ]
log_test $? "root mmaps resource2 read/write and writes into every read-only page while VM1 runs"

host wait ro
src=$?
canaries=$(jq -r '.canaries.ok' "$j" 2>/dev/null)
checked=$(jq -r '.canaries.pages_checked' "$j" 2>/dev/null)
damaged=$(jq -r '.canaries.damaged | join(" ")' "$j" 2>/dev/null)
diag "simulator (exit $src): canaries ${canaries:-?} ($checked pages checked, damaged: ${damaged:-none})"

case $devid in
0x10f0)
	isnum "$pages" "$visible" "$kept" && [ "$pages" -gt 0 ] &&
		[ "$visible" = "$pages" ] && [ "$kept" = "$pages" ]
	log_test $? "vhost-pci device: every read-only window shows VM1's bytes and ignores VM2's writes"
	[ "$canaries" = true ] && isnum "$checked" && [ "$checked" -gt 0 ]
	log_test $? "vhost-pci device: VM1 finds its read-only page unchanged"
	;;
*)
	[ "${landed:-0}" -gt 0 ]
	log_test $? "ivshmem emulation: VM2's writes DO land in read-only windows (driver-enforced only)"
	# The damaged page is one VM2 wrote: a read-only range's first page.
	hit=
	for d in $damaged; do
		for o in $(echo "$ro" | awk '{ print $1 }'); do
			[ $((d)) = "$o" ] && hit=$d
		done
	done
	[ "$canaries" = false ] && [ -n "$hit" ]
	log_test $? "ivshmem emulation: VM1 finds its read-only page damaged (${hit:-none written by VM2})"
	;;
esac

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
