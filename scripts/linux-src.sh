#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Extract the few files the project uses from Debian's linux-source-6.1
# (checkpatch, the kselftest headers, and the red-black tree the driver
# core's IOTLB uses: tools/lib/rbtree.c with its tools/include headers, as
# the kernel's tools build it) into build/linux-src, once.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${VPCI_BUILD:-$repo/build}/linux-src
tarball=$(ls /usr/src/linux-source-6.1*.tar.xz 2>/dev/null | head -n1)
[ -n "$tarball" ] || { echo "linux-source-6.1 is not installed (make deps)" >&2; exit 1; }
# The marker names the set of files: bump it when the list below changes.
done_mark=$out/.done-2
if [ -f "$done_mark" ] && [ "$done_mark" -nt "$tarball" ]; then
	echo "$out"
	exit 0
fi
top=$(basename "$tarball" .tar.xz)
mkdir -p "$out"
tar -xJf "$tarball" -C "$out" --strip-components=1 \
	"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
	"$top/scripts/const_structs.checkpatch" \
	"$top/tools/testing/selftests/kselftest.h" \
	"$top/tools/testing/selftests/kselftest_harness.h" \
	"$top/tools/lib/rbtree.c" "$top/tools/include" "$top/tools/arch/x86/include"
touch "$done_mark"
echo "$out"
