#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm1vm2
#
# ICMP between VM2 (vhost-pci driver) and VM1 (virtio-net behind
# intel-iommu): each echo request crosses VM2's xmit into VM1's RX ring,
# each reply VM1's TX ring into VM2's NAPI.  Zero loss in every IOMMU mode.
source "$(dirname "$0")/../lib.sh"

tap_begin 11

check "insmod vhost_pci_net, $VPCI_VM2_ADDR up" vpci_up

wait_until 120 vpci_queues_started
log_test $? "both of VM1's virtqueues served"
dmesg | grep -E 'queue [01]: (started|rings)' | sed 's/^/# /'

# The first packets may wait for ARP and IOTLB misses; then no loss at all.
wait_until 30 ping -c 1 -W 1 "$VPCI_VM1_IP" >/dev/null
log_test $? "VM1 answers ping"

out=$(ping -c 50 -i 0.05 -W 2 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 50
log_test $? "50 pings, zero loss"

# Every echo missed in VM1's RX ring (strict) and was served: once idle,
# both queues are running, neither is left "stalled" on a served miss.
out=$("$VPCI_BUILD/userspace/vpci-nl" --json status 2>&1)
echo "$out" | grep -o '"state": *"[a-z]*"' | xargs | sed 's/^/# queue states: /'
[ "$(echo "$out" | grep -cE '"state": *"running"')" = 2 ]
log_test $? "idle after traffic: both queues running, none stalled"

# Idle gaps longer than the miss timeout (2 s): VM1 hands out the same
# IOVAs again, and a miss there must be a new miss, not an old one timed out.
out=$(ping -c 4 -i 2.5 -W 3 "$VPCI_VM1_IP")
echo "$out" | tail -n 2 | sed 's/^/# /'
ping_clean "$out" 4
log_test $? "4 pings 2.5 s apart, zero loss"

host vm vm1 "ping -c 20 -i 0.05 -W 2 ${VPCI_VM2_ADDR%/*}"
echo "$HOST_OUT" | tail -n 2 | sed 's/^/# VM1: /'
ping_clean "$HOST_OUT" 20
log_test $? "VM1 -> VM2: 20 pings, zero loss"

# Per-queue statistics and queue/NAPI links over netdev netlink (qstats
# 6.10+, NAPI links 6.8+), read with the kernel's own YNL CLI: the device
# total (base + live queues) lies between two reads of ip -s link and
# counts every echo VM2 got (74 and up), RX queue 0 (the only pair: no
# base) as much, read after it, and
# its NAPI is served by the vq0-rx vector.
ynl_dir=$VPCI_BUILD/linux-src-6.12
ynl()
{
	python3 "$ynl_dir/tools/net/ynl/cli.py" --no-schema --output-json \
		--spec "$ynl_dir/Documentation/netlink/specs/netdev.yaml" "$@"
}
if [ "$(printf '%s\n' 6.10 "$(uname -r)" | sort -V | head -n 1)" != 6.10 ]; then
	log_test 4 "qstats: device and RX queue 0 packets agree with ip -s link (kernel $(uname -r) has none)"
	log_test 4 "queue-get: RX queue 0's NAPI has the vq0-rx IRQ (kernel $(uname -r) has none)"
else
	[ -f "$ynl_dir/tools/net/ynl/cli.py" ] || diag "no YNL CLI in $ynl_dir (make ynl)"
	ifx=$(cat "/sys/class/net/$ifname/ifindex")
	a=$(ip -j -s link show dev "$ifname")
	dev=$(ynl --dump qstats-get --json "{\"ifindex\": $ifx}")
	queues=$(ynl --dump qstats-get --json "{\"ifindex\": $ifx, \"scope\": \"queue\"}")
	b=$(ip -j -s link show dev "$ifname")
	diag "qstats: $dev"
	diag "per queue: $queues"
	jq -ne --argjson a "$a" --argjson b "$b" --argjson d "$dev" --argjson q "$queues" '
		($d | length) == 1 and ($d[0]."rx-packets" >= 74) and
		all(["rx", "tx"][]; . as $k |
			$a[0].stats64[$k].packets <= $d[0]["\($k)-packets"] and
			$d[0]["\($k)-packets"] <= $b[0].stats64[$k].packets and
			$a[0].stats64[$k].bytes <= $d[0]["\($k)-bytes"] and
			$d[0]["\($k)-bytes"] <= $b[0].stats64[$k].bytes) and
		([$q[] | select(."queue-type" == "rx" and ."queue-id" == 0)."rx-packets"] |
			length == 1 and .[0] >= $d[0]."rx-packets" and
			.[0] <= $b[0].stats64.rx.packets)' >/dev/null
	log_test $? "qstats: device and RX queue 0 packets agree with ip -s link"
	napi=$(ynl --dump queue-get --json "{\"ifindex\": $ifx}" |
		jq '.[] | select(.type == "rx" and .id == 0) | ."napi-id" // empty')
	irq=$( [ -n "$napi" ] && ynl --do napi-get --json "{\"id\": $napi}" | jq '.irq // empty')
	want=$(awk '/-vq0-rx$/ { sub(":", "", $1); print $1 }' /proc/interrupts)
	diag "RX queue 0: NAPI ${napi:-none}, IRQ ${irq:-none}, vq0-rx vector IRQ ${want:-none}"
	[ -n "$irq" ] && [ "$irq" = "$want" ]
	log_test $? "queue-get: RX queue 0's NAPI has the vq0-rx IRQ"
fi

ethtool -S "$ifname" | grep -vE ': 0$' | sed 's/^/# /'
faults_zero "$ifname"
log_test $? "no datapath faults counted"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
