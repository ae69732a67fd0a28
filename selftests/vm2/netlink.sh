#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# vpci-topology: vm2
#
# The control plane without VM1: every command of the vhost_pci generic
# netlink family through vpci-nl (status/dump, IOTLB dump, mode, events),
# strict policies (wrong type, out of range, unknown attribute, unknown or
# foreign ifindex, another namespace), CAP_NET_ADMIN for MODE_SET, IOTLB_DUMP and
# the events group, ethtool -i/-S/-l/-g, debugfs, tracepoints and a fault event
# received by "vpci-nl monitor".  There is no VM1 here, so the fault is
# raised with debugfs inject_fault, which goes through the datapath's own
# fault path (counters, tracepoint, event); see docs/testing.md.
source "$(dirname "$0")/../lib.sh"

tap_begin 36

NL=$VPCI_BUILD/userspace/vpci-nl
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# Under TCG every process costs: checks grep vpci-nl's output, no python.
# raw_errno <raw args...> : the errno a hand-built request got (0 = accepted)
raw_errno() { "$NL" raw "$@" | sed -n 's/^error \([0-9]*\) .*/\1/p; s/^ok, .*/0/p'; }
# has <text> <fixed string>... : every string occurs in text
has() {
	local t=$1 s
	shift
	for s in "$@"; do
		grep -qF -- "$s" <<<"$t" || { diag "missing: $s"; return 1; }
	done
}

dev=
for d in $(ivshmem_devices); do
	ivshmem_has_msix "$d" && dev=$d
done
insmod "$VPCI_KO" && [ "$(bound_driver "$dev")" = vhost_pci_net ]
log_test $? "insmod, driver bound to $dev"
ifname=$(netdev_of "$dev")
ifx=$(cat "/sys/class/net/$ifname/ifindex")
ip link set dev "$ifname" up
dbg=/sys/kernel/debug/vhost_pci_net/$dev

modinfo "$VPCI_KO" | grep -q '^parm: *miss_timeout_ms:Milliseconds' &&
	modinfo "$VPCI_KO" | grep -q '^parm: *default_poll:Start new devices in poll mode'
log_test $? "modinfo documents default_poll and miss_timeout_ms"

# --- DEV_GET ---
out=$("$NL" status "$ifname")
rc=$?
diag "$(head -n1 <<<"$out")"
[ $rc -eq 0 ] && echo "$out" | grep -q "^$ifname (ifindex $ifx): mode interrupt"
log_test $? "status $ifname (DEV_GET doit)"

out=$("$NL" --json status)
has "$out" "\"ifname\": \"$ifname\"" '"max_queue_pairs": 1' '"device_features": "0x320009983"' \
	'"capacity": 65536' '"events": []' '"index": 1' &&
	[ "$(grep -c '"ifname"' <<<"$out")" = 1 ] &&
	[ "$(grep -c '"state": "stopped"' <<<"$out")" = 2 ]
log_test $? "status --json (DEV_GET dump): one device, 1 pair, 2 stopped queues, features, IOTLB capacity"

# --- IOTLB_DUMP ---
out=$("$NL" --json iotlb "$ifname")
has "$out" '"consistent": true' '"entries": []' &&
	"$NL" iotlb "$ifname" | grep -q "^$ifname: 0 IOTLB entries"
log_test $? "iotlb $ifname (IOTLB_DUMP): empty without VM1, consistent"
[ "$(raw_errno iotlb-dump --dump)" = 22 ]
log_test $? "IOTLB_DUMP without ifindex: EINVAL"

# --- MODE_SET ---
mode() { "$NL" status "$ifname" | sed -n 's/.*: mode \([a-z]*\), hybrid \([0-9]*\) us.*/\1 \2/p'; }
"$NL" mode "$ifname" poll && [ "$(mode)" = "poll 0" ] &&
	ethtool --show-priv-flags "$ifname" | grep -q 'poll-mode *: on'
log_test $? "mode poll (ethtool priv flag follows)"
"$NL" mode "$ifname" hybrid 50 && [ "$(mode)" = "hybrid 50" ] &&
	ethtool -c "$ifname" | grep -q '^rx-usecs: *50$' &&
	ethtool --show-priv-flags "$ifname" | grep -q 'poll-mode *: off'
log_test $? "mode hybrid 50 (ethtool rx-usecs follows)"
"$NL" mode "$ifname" interrupt && [ "$(mode)" = "interrupt 0" ]
log_test $? "mode interrupt"
out=$("$NL" raw mode-set --attr "u32:1=$ifx" --attr u32:7=2)
has "$out" "error 22 " 'hybrid mode needs hybrid usecs > 0'
log_test $? "hybrid without usecs: EINVAL with an extack ($out)"
"$NL" events "$ifname" iotlb &&
	"$NL" status "$ifname" | grep -q 'optional events: iotlb (0 dropped)' &&
	"$NL" events "$ifname" none &&
	"$NL" status "$ifname" | grep -q 'optional events: none (0 dropped)'
log_test $? "events iotlb / none (MODE_SET events attribute)"
[ "$(raw_errno mode-set --attr "u32:1=$ifx")" = 22 ]
log_test $? "MODE_SET with nothing to set: EINVAL"

# --- strict policies ---
[ "$(raw_errno dev-get --attr "u64:1=$ifx")" = 22 ]
log_test $? "ifindex as u64 (wrong type): EINVAL"
[ "$(raw_errno dev-get --attr "str:1=$ifname")" = 22 ]
log_test $? "ifindex as string (wrong type): EINVAL"
[ "$(raw_errno dev-get --attr u32:1=0)" = 34 ]
log_test $? "ifindex 0 (below the policy minimum): ERANGE"
[ "$(raw_errno mode-set --attr "u32:1=$ifx" --attr u32:7=3)" = 34 ] &&
	[ "$(raw_errno mode-set --attr "u32:1=$ifx" --attr u32:8=1000001)" = 34 ] &&
	[ "$(raw_errno mode-set --attr "u32:1=$ifx" --attr u32:12=2)" = 22 ] &&
	[ "$(mode)" = "interrupt 0" ]
log_test $? "mode 3, hybrid usecs 1000001: ERANGE; unknown event bit: EINVAL; nothing changed"
[ "$(raw_errno dev-get --attr "u32:1=$ifx" --attr u32:7=1)" = 22 ] &&
	[ "$(raw_errno dev-get --attr "u32:1=$ifx" --attr u32:200=1)" = 22 ]
log_test $? "attribute DEV_GET does not take, attribute type 200: EINVAL"
[ "$(raw_errno dev-get --attr u32:1=99999)" = 19 ] &&
	"$NL" raw dev-get --attr u32:1=99999 | grep -q 'no such device'
log_test $? "unknown ifindex: ENODEV"
out=$("$NL" status lo 2>&1)
[ $? -eq 1 ] && [ "$out" = "vpci-nl: lo: not a vhost-pci device (kernel: not a vhost-pci device)" ] &&
	[ "$(raw_errno mode-set --attr u32:1=1 --attr u32:7=1)" = 95 ]
log_test $? "lo: EOPNOTSUPP, '$out'"
out=$("$NL" status nosuchif 2>&1)
[ $? -eq 1 ] && [ "$out" = "vpci-nl: nosuchif: no such device" ]
log_test $? "unknown name: '$out'"
[ "$(raw_errno fault-ntf --attr "u32:1=$ifx")" = 95 ]
log_test $? "notification command sent as a request: EOPNOTSUPP"

# --- namespaces ---
[ "$(unshare --net "$NL" --json status | tr -d ' \n')" = "[]" ] &&
	unshare --net "$NL" raw dev-get --attr "u32:1=$ifx" | grep -q '^error 19 ' 
log_test $? "another netns sees no device, ifindex $ifx unknown there"

# --- privileges ---
"${NOBODY[@]}" "$NL" status "$ifname" >/dev/null
log_test $? "unprivileged status allowed"
out=$("${NOBODY[@]}" "$NL" mode "$ifname" poll 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'permission denied' && [ "$(mode)" = "interrupt 0" ]
log_test $? "unprivileged MODE_SET rejected: '$out'"
out=$("${NOBODY[@]}" "$NL" iotlb "$ifname" 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'permission denied' && ! echo "$out" | grep -q 'IOTLB entries'
log_test $? "unprivileged IOTLB_DUMP (VM1's layout) rejected: '$out'"
out=$("${NOBODY[@]}" "$NL" monitor --timeout 1 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'permission denied'
log_test $? "unprivileged monitor (events group) rejected: '$out'"

# --- ethtool ---
ethtool -i "$ifname" | grep -q '^driver: vhost_pci_net$' &&
	ethtool -i "$ifname" | grep -q "^bus-info: $dev$"
log_test $? "ethtool -i"
ethtool -S "$ifname" | grep -qE '^ +iotlb_entries: 0$' &&
	ethtool -S "$ifname" | grep -qE '^ +vq0_rx_fault_perm: 0$'
log_test $? "ethtool -S"
out=$(ethtool -l "$ifname")
[ "$(echo "$out" | awk '/^Combined:/ {print $2}' | tr '\n' ' ')" = "1 1 " ] &&
	! ethtool -L "$ifname" combined 2 2>/dev/null
log_test $? "ethtool -l: combined max 1, current 1; -L refused"
out=$(ethtool -g "$ifname")
[ "$(echo "$out" | awk '/^(RX|TX):/ {print $2}' | tr '\n' ' ')" = "32768 32768 0 0 " ] &&
	! ethtool -G "$ifname" rx 256 2>/dev/null
log_test $? "ethtool -g: max 32768, VM1's sizes (none yet); -G refused"

# --- debugfs, tracepoints, fault event ---
grep -q '^mode: interrupt$' "$dbg/state" && grep -q '^queue 1: stopped' "$dbg/state" &&
	head -n1 "$dbg/iotlb" | grep -q '^# start last bar_offset perm' &&
	echo 1 > "$dbg/fail_next_inv_ack" && [ "$(cat "$dbg/fail_next_inv_ack")" = 1 ] &&
	echo 0 > "$dbg/fail_next_inv_ack" && ! echo "9 perm" > "$dbg/inject_fault" 2>/dev/null &&
	! echo "1 bogus" > "$dbg/inject_fault" 2>/dev/null
log_test $? "debugfs state, iotlb, fail_next_inv_ack; inject_fault rejects bad input"

tr=/sys/kernel/tracing
echo 1 > "$tr/events/vhost_pci_net/vpci_fault/enable" && echo > "$tr/trace"
log_test $? "tracepoint vhost_pci_net:vpci_fault enabled"

rm -f /tmp/mon.out /tmp/mon.err
"$NL" --json monitor --count 1 --timeout 20 >/tmp/mon.out 2>/tmp/mon.err &
mon=$!
wait_until 10 grep -q monitoring /tmp/mon.err &&
	echo "1 perm 0x1000 64" > "$dbg/inject_fault" && wait $mon
rc=$?
diag "event: $(cat /tmp/mon.out)"
[ $rc -eq 0 ] &&
	has "$(cat /tmp/mon.out)" '"event":"fault"' "\"ifname\":\"$ifname\"" '"queue":1' \
		'"iova":"0x1000"' '"len":64' '"reason":"perm"' '"errno":-13' '"access":"read"'
log_test $? "monitor receives the fault event (queue, iova, len, reason, errno)"
ethtool -S "$ifname" | grep -qE '^ +vq0_rx_fault_perm: 1$' &&
	grep -q 'vpci_fault: ifindex='"$ifx"' queue=1 err=-13 reason=0 iova=0x1000 len=64' "$tr/trace"
log_test $? "the same fault counted in ethtool -S and traced"
echo 0 > "$tr/events/vhost_pci_net/vpci_fault/enable"

rmmod vhost_pci_net && ! "$NL" status 2>/dev/null
log_test $? "rmmod: the family is gone"

check "no BUG/WARNING/Oops in dmesg" dmesg_clean

tap_end
