#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2sim
#
# A large private IOTLB (issue 14, item 2): the simulator pushes one UPDATE
# per 4 KiB page for its buffers and a few thousand pages no traffic uses
# (--iotlb-push --push-pages --extra-mappings), with a static pool, so the
# table holds thousands of stable entries while frames flow.  Then:
#
#  - the driver's table (a red-black tree) holds them all: ethtool -S
#    iotlb_entries, the netlink IOTLB_DUMP and the debugfs dump agree on
#    the count, and the dump is in IOVA order, disjoint, consistent (no
#    NLM_F_DUMP_INTR), and spans many netlink messages and debugfs chunks
#    (each resumes after the last entry of the one before);
#  - frames still come back lossless and in order.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/lib_sim.sh"

extra=3000
frames=10000
rate=400

tap_begin 6

sim_setup
log_test $? "driver loaded, $ifname up, tc mirred reflector on ingress"
drops0=$(sim_drops)
dev=$(basename "$(readlink -f "$VPCI_DRV"/0000:* | head -n1)")
dbg=/sys/kernel/debug/vhost_pci_net/$dev
NL=$VPCI_BUILD/userspace/vpci-nl
j=$VPCI_RUN/sim-iotlb.json

host timeout=120 bg iotlb vpci-sim $(sim_args) --iommu-policy static-pool \
	--iotlb-push --push-pages --extra-mappings $extra --mode interrupt \
	--direction both -n $frames --size 60-1514 --rate $rate --drain-ms 3000 \
	--connect-wait-ms 5000 --json "$j"
started=$?

# Every extra page and then some (the pool's buffers and the rings).
entries_ready() { n=$(sim_stat iotlb_entries); isnum "$n" && [ "$n" -gt $extra ]; }
[ $started -eq 0 ] && wait_until 60 entries_ready
log_test $? "the IOTLB fills: ${n:-no} entries (more than the $extra extra pages)"

# The table is stable now (static pool, nothing unmapped until the end).
before=$(sim_stat iotlb_entries)
out=$("$NL" --json iotlb "$ifname")
after=$(sim_stat iotlb_entries)
nl=$(jq '.entries | length' <<<"$out")
dbgn=$(grep -vc '^#' "$dbg/iotlb")
diag "ethtool iotlb_entries $before/$after, netlink dump $nl, debugfs $dbgn"
isnum "$before" "$nl" "$dbgn" && [ "$before" = "$after" ] && [ "$nl" = "$before" ] &&
	[ "$dbgn" = "$before" ] && jq -e '.consistent' <<<"$out" >/dev/null
log_test $? "ethtool, netlink IOTLB_DUMP and debugfs agree on $before entries; dump consistent"

# "start last" per entry as decimal numbers (netlink prints 0x..., debugfs
# %#llx, which prints 0 without the prefix).
decimal() { while read -r s l; do printf '%d %d\n' "$s" "$l"; done; }
nl_list=$(jq -r '.entries[] | "\(.start) \(.last)"' <<<"$out" | decimal)
dbg_list=$(grep -v '^#' "$dbg/iotlb" | awk '{ print $1, $2 }' | decimal)
# In IOVA order and disjoint: each start past the previous last.
ordered()
{
	local prev=-1 s l
	while read -r s l; do
		[ "$s" -gt "$prev" ] && [ "$l" -ge "$s" ] || { diag "out of order at $s"; return 1; }
		prev=$l
	done <<<"$nl_list"
}
same_as_debugfs()
{
	[ "$nl_list" = "$dbg_list" ] && return 0
	diag "netlink and debugfs differ: $(diff <(echo "$nl_list") <(echo "$dbg_list") | head -n 4 | xargs)"
	return 1
}
[ "$nl" -gt 64 ] && ordered && same_as_debugfs
log_test $? "dump in IOVA order, disjoint, the same through netlink and debugfs (many messages and chunks)"

# The backend refused none of VM1's updates, however far the driver fell
# behind (those it had no b2d room for waited in its shadow: "deferred").
host vpci-ctl --control-socket "$VPCI_CTL" status
rejected=$(echo "$HOST_OUT" | jq -r '.iotlb.rejected // empty')
deferred=$(echo "$HOST_OUT" | jq -r '.iotlb.deferred // empty')
updates=$(echo "$HOST_OUT" | jq -r '.iotlb.updates // empty')
diag "backend: $updates updates, $deferred deferred for b2d room, $rejected refused"
isnum "$rejected" "$deferred" "$updates" && [ "$rejected" = 0 ] && [ "$updates" -gt $extra ]
log_test $? "the backend took every update VM1 pushed (none refused)"

host wait iotlb
rc=$?
if [ -s "$j" ]; then
	sim_show "$j"
	[ $rc -eq 0 ] && jq -e --argjson n $frames '.ok and .rx.unique == $n and .rx.lost == 0 and
		.rx.corrupt == 0 and .rx.duplicates == 0 and .rx.reordered == 0 and
		.canaries.ok' "$j" >/dev/null && [ "$(sim_drops)" = "$drops0" ]
else
	diag "no summary (rc $rc): $(echo "$HOST_OUT" | tail -n 3 | xargs)"
	false
fi
log_test $? "$frames frames each way at $rate/s over the large table: lossless, in order"

tap_end
