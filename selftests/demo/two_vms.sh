#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# `make demo`: VM1 (virtio-net behind intel-iommu) and VM2 (vhost_pci_net)
# talk directly through VM1's memory.  Runs in VM2; prints what a person
# wants to see and a summary at the end.
source "$(dirname "$0")/../lib.sh"

T=${VPCI_DEMO_TIME:-5}
step() { echo; echo "==> $*"; }
summary=()

step "insmod vhost_pci_net.ko"
vpci_up || { echo "the driver did not come up"; exit 1; }
dmesg | grep vhost_pci_net | sed 's/^/    /'
pci=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
case $(cat "/sys/bus/pci/devices/$pci/device" 2>/dev/null) in
0x10f0) summary+=("device:    vhost-pci QEMU device (1af4:10f0): BAR2 shows only what VM1's IOMMU maps, enforced by VM2's QEMU and the backend") ;;
0x1110) summary+=("device:    ivshmem-doorbell emulation (1af4:1110): BAR2 maps all of VM1's RAM, VM1's IOMMU enforced by this driver only") ;;
*) summary+=("device:    unknown ($pci)") ;;
esac
echo "    ${summary[-1]}"

step "waiting for VM1's virtio-net to start its queues"
if ! wait_until 120 vpci_queues_started; then
	echo "VM1 did not start its queues"
	exit 1
fi
dmesg | grep -E 'queue [01]: (rings mapped|started)' | sed 's/^/    /'

case ${VPCI_DEMO_MODE:-interrupt} in
poll) ethtool --set-priv-flags "$ifname" poll-mode on ;;
hybrid) ethtool -C "$ifname" rx-usecs 500 ;;
esac
summary+=("mode:      ${VPCI_DEMO_MODE:-interrupt} ($(ethtool --show-priv-flags "$ifname" | grep -o 'poll-mode.*'), rx-usecs $(ethtool -c "$ifname" | awk '/rx-usecs:/ { print $2 }'))")

step "ip -d link show dev $ifname; ethtool -i $ifname"
ip -d link show dev "$ifname"
ethtool -i "$ifname" | head -n 3

step "ping VM1 ($VPCI_VM1_IP) from VM2"
wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
out=$(ping -c 20 -i 0.1 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/    /'
summary+=("ping:      $(echo "$out" | grep -o '[0-9]*% packet loss'), rtt $(echo "$out" | sed -n 's/.*= \(.*\) ms/\1 ms (min\/avg\/max\/mdev)/p')")

for dir in "VM2 -> VM1:" "VM1 -> VM2:-R"; do
	label=${dir%%:*}
	flag=${dir#*:}
	step "iperf3 TCP $label, ${T}s"
	out=$(iperf3 -c "$VPCI_VM1_IP" -t "$T" $flag -f m 2>&1)
	echo "$out" | grep -E 'sender|receiver|error' | sed 's/^/    /'
	rate=$(echo "$out" | awk '/receiver/ { print $(NF-2), $(NF-1) }')
	summary+=("tcp $label: ${rate:-failed}")
done

step "driver counters (non-zero)"
ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/    /'

step "backend (host)"
host vpci-ctl --control-socket "$VPCI_CTL" status
wiring=$(echo "$HOST_OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
qs = d["frontend"]["queues"][:2]
print(", ".join("vq%d %s" % (i, q["notify"]) for i, q in enumerate(qs)),
      "| backend cpu %.2f s since start, %d calls and %d kicks relayed" % (
          d.get("cpu_seconds", 0), sum(q.get("calls_relayed", 0) for q in qs),
          sum(q.get("kicks_relayed", 0) for q in qs)))' 2>&1)
echo "    $wiring"

echo
echo "==================== summary ===================="
for l in "${summary[@]}"; do echo "  $l"; done
echo "  iotlb:     $(ethtool -S "$ifname" | awk '/^ *iotlb_(updates|invalidations|misses):/ { printf "%s %s  ", $1, $2 }')"
echo "  wiring:    $wiring"
echo "================================================="
