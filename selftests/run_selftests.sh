#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Run guest selftests, each in fresh guests through vm/run.py, as one TAP 13
# stream in the style of kselftest's runner: each test's own TAP is indented
# as "# " diagnostics, then "ok N selftests: vpci: <test>".  Exit 1 if any
# test failed; a skipped test (exit 4) is reported "# SKIP", not as a pass.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tests=("$@")
[ ${#tests[@]} -gt 0 ] || { echo "usage: $0 TEST..." >&2; exit 2; }

echo "TAP version 13"
echo "1..${#tests[@]}"
n=0 pass=0 fail=0 skip=0
for t in "${tests[@]}"; do
	n=$((n + 1))
	# TEST[:VAR=VALUE[:VAR=VALUE...]] runs TEST with topology variables set;
	# the pseudo-variable topology=NAME runs it in another topology (e.g.
	# e2e/ping.sh:topology=vm1vm2-dev for the vhost-pci QEMU device).
	IFS=: read -r -a parts <<<"$t"
	vars=()
	for v in "${parts[@]:1}"; do
		case $v in
		topology=*) vars+=(--topology "${v#topology=}") ;;
		*) vars+=(--var "$v") ;;
		esac
	done
	echo "# selftests: vpci: $t"
	start=$SECONDS
	"$here/vm/run.py" "${vars[@]}" "$here/${parts[0]}" 2>&1 | sed -u 's/^/# /'
	rc=${PIPESTATUS[0]}
	echo "# $t: $((SECONDS - start)) s"
	case $rc in
	0) pass=$((pass + 1)); echo "ok $n selftests: vpci: $t" ;;
	4) skip=$((skip + 1)); echo "ok $n selftests: vpci: $t # SKIP" ;;
	*) fail=$((fail + 1)); echo "not ok $n selftests: vpci: $t # exit=$rc" ;;
	esac
done
echo "selftests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
