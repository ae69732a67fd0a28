#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Extract the few files the project uses from Debian's kernel source
# packages, once, and print where they are:
#   linux-src.sh        linux-source-6.1 into build/linux-src: checkpatch,
#                       the kselftest headers, and the red-black tree the
#                       driver core's IOTLB uses (tools/lib/rbtree.c with
#                       its tools/include headers, as the kernel's tools
#                       build it);
#   linux-src.sh 6.12   linux-source-6.12 into build/linux-src-6.12: the
#                       kernel's YNL CLI and netlink specs, and its
#                       drivers/net selftests stats.py, queues.py and ping.py with
#                       their Python library, for the 6.12 guest tests
#                       (qstats, queue/NAPI links).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${VPCI_BUILD:-$repo/build}
ver=${1:-6.1}
case $ver in
6.1)
	out=$build/linux-src
	# The marker names the set of files: bump it when the list changes.
	files=(scripts/checkpatch.pl scripts/spelling.txt scripts/const_structs.checkpatch
	       tools/testing/selftests/kselftest.h tools/testing/selftests/kselftest_harness.h
	       tools/lib/rbtree.c tools/include tools/arch/x86/include)
	mark=.done-2 ;;
6.12)
	out=$build/linux-src-6.12
	files=(tools/net/ynl/cli.py tools/net/ynl/lib Documentation/netlink/genetlink.yaml
	       Documentation/netlink/genetlink-legacy.yaml Documentation/netlink/netlink-raw.yaml
	       Documentation/netlink/specs/netdev.yaml Documentation/netlink/specs/ethtool.yaml
	       Documentation/netlink/specs/rt_link.yaml
	       tools/testing/selftests/net/lib/py tools/testing/selftests/drivers/net/lib/py
	       tools/testing/selftests/drivers/net/stats.py
	       tools/testing/selftests/drivers/net/queues.py
	       tools/testing/selftests/drivers/net/ping.py)
	mark=.done-3 ;;
*)
	echo "linux-src.sh: no such source: $ver (6.1 or 6.12)" >&2
	exit 2 ;;
esac
tarball=$(ls /usr/src/linux-source-"$ver".tar.xz 2>/dev/null | head -n1)
[ -n "$tarball" ] || { echo "linux-source-$ver is not installed (make deps)" >&2; exit 1; }
if [ -f "$out/$mark" ] && [ "$out/$mark" -nt "$tarball" ]; then
	echo "$out"
	exit 0
fi
top=$(basename "$tarball" .tar.xz)
mkdir -p "$out"
tar -xJf "$tarball" -C "$out" --strip-components=1 "${files[@]/#/$top/}"
touch "$out/$mark"
echo "$out"
